"""Smoke runs of the codec, lm-data and lm recipes on tiny synthetic data (seconds each)."""

import json
import math

import numpy as np
import pytest
import soundfile as sf
import torch

from models.checkpoint import load_checkpoint
from models.sampling import SamplingParams
from models.spectral_codec import SpectralCodec, SpectralCodecConfig
from musicrl.config import load_config
from musicrl.lm_data import TokenData, write_token_data
from musicrl.losses import masked_cross_entropy
from musicrl.recipes import codec as codec_recipe
from musicrl.recipes import lm as lm_recipe

TINY_CODEC = [
    "codec.width=32",
    "codec.latent_dim=8",
    "codec.num_blocks=1",
    "codec.codebook_size=16",
    "codec.griffin_lim_iters=4",
]


@pytest.fixture(scope="module")
def sine_corpus(tmp_path_factory):
    """Six 2 s clips of two-note chords, as a corpus directory (manifest + WAVs)."""
    root = tmp_path_factory.mktemp("corpus")
    (root / "audio").mkdir()
    rows, t = [], np.arange(32000) / 16000
    for i in range(6):
        f = 220 * 2 ** (i / 12)
        wav = 0.3 * np.sin(2 * math.pi * f * t) + 0.2 * np.sin(2 * math.pi * 1.5 * f * t)
        sf.write(root / "audio" / f"c{i}.wav", wav.astype(np.float32), 16000, subtype="PCM_16")
        rows.append(
            {
                "id": f"c{i}",
                "path": f"audio/c{i}.wav",
                "caption": f"a chord number {i}",
                "split": "test" if i >= 4 else "train",
                "style": "ambient",
            }
        )
    (root / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return root


def test_codec_recipe_trains_saves_and_resumes(sine_corpus, tmp_path):
    out = tmp_path / "codec"
    args = [
        f"corpus={sine_corpus}",
        f"out={out}",
        "steps=12",
        "quantize_after=4",
        "restart_every=4",
        "batch_size=4",
        "crop_frames=32",
        "log_every=4",
        "save_every=6",
        "eval_clips=2",
        *TINY_CODEC,
    ]
    metrics = codec_recipe.main(load_config(codec_recipe.Config, None, args))
    assert metrics["step"] == 12 and math.isfinite(metrics["mel_distance"]) and -1 <= metrics["chroma_corr"] <= 1
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert all(math.isfinite(r["loss"]) for r in log)
    codec = SpectralCodec.load(out / "codec")
    fresh = SpectralCodec(SpectralCodecConfig(width=32, latent_dim=8, num_blocks=1, codebook_size=16))
    assert not torch.equal(codec.encoder[0].weight, fresh.encoder[0].weight)
    assert bool(codec.quantizer.initialized)
    codes = codec.encode(torch.zeros(1, 1, 16000))
    assert codes.shape == (1, 4, 51) and codes.max() < 16
    assert codec.decode(codes).shape == (1, 1, 51 * 320)
    assert (out / "spectrograms.png").stat().st_size > 1000
    # resume: the same run with more steps continues from step 12
    metrics = codec_recipe.main(load_config(codec_recipe.Config, None, [*args[:2], "steps=14", *args[3:]]))
    assert metrics["step"] == 14
    steps = [json.loads(line)["step"] for line in (out / "log.jsonl").read_text().splitlines()]
    assert steps == sorted(steps) and steps[-1] == 14


@pytest.fixture(scope="module")
def token_dir(tmp_path_factory):
    g = torch.Generator().manual_seed(0)
    path = tmp_path_factory.mktemp("tokens")
    codes = torch.randint(0, 16, (8, 4, 20), generator=g)
    states = [torch.randn(3 + i % 3, 384, generator=g) for i in range(8)]
    meta = {
        "ids": [f"c{i}" for i in range(8)],
        "splits": ["train"] * 6 + ["valid"] * 2,
        "captions": [f"clip {i}" for i in range(8)],
        "attributes": [{}] * 8,
    }
    write_token_data(path, codes, states, meta)
    return path


def test_token_data_round_trip(token_dir):
    data = TokenData.load(token_dir)
    assert data.codes.shape == (8, 4, 20) and data.split("valid") == [6, 7]
    text = data.text_states([0, 1, 2], "cpu")
    assert text.states.shape == (3, 5, 384) and text.mask.sum(1).tolist() == [3, 4, 5]


TINY_LM = [
    "lm.dim=32",
    "lm.num_layers=1",
    "lm.num_heads=2",
    "lm.ffn_dim=64",
    "lm.cardinality=16",
    "lm.max_positions=64",
]


def test_lm_recipe_learns_saves_resumes_and_exports(token_dir, sine_corpus, tmp_path):
    codec_out = tmp_path / "codec"
    codec_recipe.main(
        load_config(
            codec_recipe.Config,
            None,
            [
                f"corpus={sine_corpus}",
                f"out={codec_out}",
                "steps=4",
                "quantize_after=2",
                "batch_size=2",
                "crop_frames=16",
                "eval_clips=1",
                *TINY_CODEC,
            ],
        )
    )
    out = tmp_path / "lm"
    args = [
        f"data={token_dir}",
        f"out={out}",
        "steps=8",
        "batch_size=4",
        "eval_every=4",
        "eval_batches=1",
        "save_every=4",
        "log_every=2",
        "lr=3e-3",
        "warmup=1",
        f"codec={codec_out / 'codec'}",
        "max_duration=0.3",
        *TINY_LM,
    ]
    best = lm_recipe.main(load_config(lm_recipe.Config, None, args))
    assert math.isfinite(best["val_nll"]) and len(best["val_nll_per_codebook"]) == 4
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines() if "loss" in line]
    assert log[-1]["loss"] < log[0]["loss"]  # memorising 6 random clips: the loss must fall
    gen = load_checkpoint(out / "model")
    assert gen.lm.cfg.dim == 32 and gen.meta["lineage"]["recipe"] == "lm"
    clip = gen.generate(["a chord"], 0.2, SamplingParams(cfg=3.0), seeds=0)
    assert clip.codes.shape == (1, 4, 10) and torch.isfinite(clip.audio).all()
    best2 = lm_recipe.main(load_config(lm_recipe.Config, None, [*args[:2], "steps=10", *args[3:]]))
    steps = [json.loads(line)["step"] for line in (out / "log.jsonl").read_text().splitlines()]
    assert steps[-1] == 10 and math.isfinite(best2["val_nll"])


def test_masked_cross_entropy_by_hand():
    """Uniform logits over V=4 give NLL log 4 at every valid position; invalid ones are ignored."""
    logits = torch.zeros(1, 2, 3, 4)
    targets = torch.tensor([[[1, 4, 2], [4, 0, 3]]])  # 4 = the special id, only at invalid positions
    valid = torch.tensor([[True, False, True], [False, True, True]])
    nll = masked_cross_entropy(logits, targets, valid)
    torch.testing.assert_close(nll, torch.full((2,), math.log(4)))
