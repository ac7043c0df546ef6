"""``musicrl bench codec``: its metric functions by hand, the spectral codec's decode settings, a tiny run."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from evaluation.audio_metrics import chroma_cosine, multires_mel_distance
from models.audio_features import griffin_lim
from models.conditioners import DebugConditioner
from models.debug import debug_lm_config, seeded_lm
from models.errors import InputError
from models.generator import MusicGenerator
from models.spectral_codec import SpectralCodec, SpectralCodecConfig
from musicrl.bench.codec import Candidate, baseline_of, run_codec_bench, summarise
from musicrl.cli import main

RATE = 16000


def sine(hz: float, seconds: float = 1.0, rate: int = RATE) -> torch.Tensor:
    return torch.sin(2 * math.pi * hz * torch.arange(int(seconds * rate)) / rate)


def tiny_codec(iters: int = 4) -> SpectralCodec:
    with torch.random.fork_rng():
        torch.manual_seed(1)
        return SpectralCodec(SpectralCodecConfig(sample_rate=8000, n_fft=256, hop=160, width=16, latent_dim=8,
                                                 num_blocks=1, num_quantizers=4, codebook_size=64,
                                                 griffin_lim_iters=iters)).eval()


# --- metric functions, by hand ------------------------------------------------------------------
def test_chroma_cosine_by_hand():
    """A5 (880 Hz) alone: chroma (0, .., e_A, ..); with E6 as loud: e_A + e_E, so cos = 1 / sqrt(2).
    A semitone at 880 Hz is ~6.6 bins of a 2048-point FFT at 16 kHz, so each tone's leakage stays in its class."""
    a, e = sine(880), sine(880 * 2 ** (7 / 12))
    assert chroma_cosine(a, a, RATE) == pytest.approx(1.0)
    assert chroma_cosine(a, 0.1 * a, RATE) == pytest.approx(1.0, abs=1e-6)  # loudness does not count
    assert chroma_cosine(a, e, RATE) == pytest.approx(0.0, abs=0.01)
    assert chroma_cosine(a, a + e, RATE) == pytest.approx(1 / math.sqrt(2), abs=0.01)
    assert math.isnan(chroma_cosine(a, torch.zeros_like(a), RATE))  # a silent estimate has no chroma direction


def test_mel_distance_by_hand():
    """log-mel of power: doubling the amplitude adds log 4 = 2 log 2 to every band that is well above the floor
    (white noise fills them all)."""
    noise = torch.randn(RATE, generator=torch.Generator().manual_seed(0))
    assert multires_mel_distance(noise, noise, RATE) == 0.0
    assert multires_mel_distance(noise, 2 * noise, RATE) == pytest.approx(2 * math.log(2), abs=1e-3)


def test_summarise_ratios_by_hand():
    """Baseline mel [1, 1], candidate [2, 2] -> ratio 2 [2, 2]; chroma [0.5, 1.0] vs [1, 1] -> 0.75 within
    [0.5, 1.0]; the baseline's own ratio is 1 [1, 1]."""
    base, cand = Candidate(64, 0.99), Candidate(8, 0.99)
    ones = np.ones(2)
    values = {base: {"mel": ones, "chroma": ones, "quality": ones, "seconds": ones},
              cand: {"mel": 2 * ones, "chroma": np.array([0.5, 1.0]), "quality": ones, "seconds": 0.25 * ones}}
    rows = {r["iters"]: r for r in summarise(values, base)}
    assert rows[64]["baseline"] and rows[64]["mel_ratio"] == 1.0 and rows[64]["mel_ratio_ci"] == [1.0, 1.0]
    assert rows[8]["mel_ratio"] == 2.0 and rows[8]["mel_ratio_ci"] == [2.0, 2.0] and rows[8]["mel"] == 2.0
    lo, hi = rows[8]["chroma_ratio_ci"]
    assert rows[8]["chroma_ratio"] == 0.75 and 0.5 <= lo <= hi <= 1.0
    assert rows[8]["seconds_ratio"] == 0.25


# --- the decode -------------------------------------------------------------------------------------
def test_decode_settings_shape_finite_deterministic():
    """Fewer iterations: same length T * hop, finite, deterministic, different audio; 0 iterations is one
    iSTFT of the seeded random phase; the config's setting is what decode uses by default."""
    codec = tiny_codec(iters=8)
    codes = torch.randint(0, 64, (2, 4, 30), generator=torch.Generator().manual_seed(0))
    full = codec.decode(codes)
    assert full.shape == (2, 1, 30 * 160)
    assert torch.equal(full, codec.decode(codes, iters=8, momentum=0.99))
    for iters, momentum in [(2, 0.99), (0, 0.99), (8, 0.5)]:
        out = codec.decode(codes, iters=iters, momentum=momentum)
        assert out.shape == full.shape and torch.isfinite(out).all()
        assert torch.equal(out, codec.decode(codes, iters=iters, momentum=momentum))
        assert not torch.allclose(out, full)
    one_istft = griffin_lim(codec.decode_magnitude(codes), 256, 160, iters=0, length=30 * 160)
    assert torch.equal(codec.decode(codes, iters=0)[:, 0], one_istft)
    assert baseline_of(codec) == Candidate(8, 0.99)


def test_old_codec_files_decode_with_the_old_momentum(tmp_path):
    """A codec.json written before griffin_lim_momentum existed loads with 0.99, the momentum it was made with."""
    import json

    codec = tiny_codec()
    codec.save(tmp_path / "c")
    cfg_file = next((tmp_path / "c").glob("*.json"))
    header = json.loads(cfg_file.read_text())
    config = header.get("config", header)
    config.pop("griffin_lim_momentum")
    cfg_file.write_text(json.dumps(header))
    assert SpectralCodec.load(tmp_path / "c").cfg.griffin_lim_momentum == 0.99


# --- the bench ----------------------------------------------------------------------------------
def test_codec_bench_runs_on_a_tiny_spectral_stack():
    cfg = debug_lm_config()
    gen = MusicGenerator(seeded_lm(cfg, 1), DebugConditioner(dim=cfg.cond_dim, seed=1), tiny_codec(iters=6),
                         name="tiny-spectral", max_duration=2.0)
    clips = [sine(440 * 2 ** (i / 12), 0.5, 8000) for i in range(3)]
    result = run_codec_bench(gen, clips, [Candidate(2, 0.99), Candidate(6, 0.99)], lambda w: w.abs().mean(1),
                             batches=[1, 2], duration=0.2, cfgs=[3.0], repeats=1, log=lambda *_: None)
    assert result["baseline"] == {"iters": 6, "momentum": 0.99, "head": False} and result["clips"] == 3
    assert [r["iters"] for r in result["rows"]] == [6, 2]  # the baseline first, no duplicate
    for r in result["rows"]:
        assert all(np.isfinite(r[m]) and np.isfinite(r[f"{m}_ratio"]) for m in ("mel", "chroma", "quality", "seconds"))
    assert {(s["iters"], s["batch"]) for s in result["shares"]} == {(6, 1), (6, 2), (2, 1), (2, 2)}
    assert all(s["decode_over_lm"] > 0 for s in result["shares"])


def test_codec_bench_adds_the_phase_head_and_a_chosen_baseline():
    cfg = debug_lm_config()
    gen = MusicGenerator(seeded_lm(cfg, 1), DebugConditioner(dim=cfg.cond_dim, seed=1), tiny_head_codec(),
                         name="tiny-head", max_duration=2.0)
    clips = [sine(440 * 2 ** (i / 12), 0.5, 8000) for i in range(2)]
    result = run_codec_bench(gen, clips, [Candidate(2, 0.99)], None, batches=[1], duration=0.2, cfgs=[1.0],
                             repeats=1, baseline_iters=8, head_iters=[0, 2], log=lambda *_: None)
    assert [r["candidate"] for r in result["rows"]] == ["GL 8 it, momentum 0.99", "GL 2 it, momentum 0.99",
                                                        "phase head + 1 iSTFT", "phase head + GL 2 it"]
    assert all(math.isnan(r["quality"]) and np.isfinite(r["mel_ratio"]) for r in result["rows"])  # no scorer
    with pytest.raises(InputError):
        Candidate(head=True).decode(tiny_codec(), torch.zeros(1, 4, 5, dtype=torch.long))


def test_codec_bench_refuses_bad_input(tmp_path):
    assert main(["bench", "codec", "--clips", "1"]) == 2
    assert main(["bench", "codec", "--momenta", "2.5"]) == 2
    assert main(["bench", "codec", "--model", "debug", "--corpus", str(tmp_path)]) == 2  # no spectral codec
    assert main(["bench", "codec", "--baseline-iters", "-1"]) == 2


# --- the learned phase head -----------------------------------------------------------------------
def tiny_head_codec() -> SpectralCodec:
    from models.phase_head import PhaseHeadConfig

    with torch.random.fork_rng():
        torch.manual_seed(2)
        return SpectralCodec(SpectralCodecConfig(sample_rate=8000, n_fft=256, hop=160, width=16, latent_dim=8,
                                                 num_blocks=1, num_quantizers=4, codebook_size=64, griffin_lim_iters=4,
                                                 phase_head=PhaseHeadConfig(features=16, bins=129, width=24,
                                                                            dilations=(1, 2)))).eval()


def test_phase_head_decode_vs_griffin_lim(tmp_path):
    """With a head: one iSTFT of |decoded| x the head's phasors — same length as Griffin-Lim's, finite,
    deterministic, the same magnitudes before resynthesis, and it survives save/load; iters=k refines the
    head's phase with k Griffin-Lim iterations (= griffin_lim started from it); head=False is Griffin-Lim from
    the random phase on the same codec."""
    codec = tiny_head_codec()
    codes = torch.randint(0, 64, (2, 4, 30), generator=torch.Generator().manual_seed(0))
    head, gl, refined = codec.decode(codes), codec.decode(codes, head=False), codec.decode(codes, iters=2)
    assert head.shape == gl.shape == refined.shape == (2, 1, 30 * 160)
    assert all(torch.isfinite(x).all() for x in (head, gl, refined))
    assert torch.equal(head, codec.decode(codes)) and torch.equal(refined, codec.decode(codes, iters=2))
    assert not torch.allclose(head, gl) and not torch.allclose(head, refined) and not torch.allclose(refined, gl)
    features, mag = codec.decode_features(codec.quantizer.decode(codes))
    spec = codec.phase_head(features, mag)
    assert spec.shape == (2, 129, 30) and torch.allclose(spec.abs(), mag, atol=1e-5)
    assert head[..., 29 * 160 :].abs().max() == 0  # past the last frame centre: zeros, as Griffin-Lim's decode
    codec.save(tmp_path / "c")  # the head is stored as fp16: the loaded codec decodes as one with rounded weights
    assert codec.phase_head.out.weight.dtype == torch.float32
    loaded = SpectralCodec.load(tmp_path / "c")
    codec.phase_head.half().float()
    assert torch.equal(loaded.decode(codes), codec.decode(codes))
    by_hand = griffin_lim(mag, 256, 160, iters=2, length=30 * 160, phase=codec.phase_head.phasors(features))
    assert torch.allclose(codec.decode(codes, iters=2)[:, 0], by_hand)
    with pytest.raises(ValueError):
        codec.phase_head(features[:, :8], mag)


@pytest.fixture(scope="module")
def tone_corpus(tmp_path_factory):
    """Four 1 s two-note clips at 8 kHz as a corpus directory (3 train, 1 test)."""
    import json

    import soundfile as sf

    root = tmp_path_factory.mktemp("tones")
    (root / "audio").mkdir()
    rows = []
    for i in range(4):
        f = 220 * 2 ** (i / 12)
        wav = 0.3 * sine(f, 1.0, 8000) + 0.2 * sine(1.5 * f, 1.0, 8000)
        sf.write(root / "audio" / f"c{i}.wav", wav.numpy(), 8000, subtype="PCM_16")
        rows.append({"id": f"c{i}", "path": f"audio/c{i}.wav", "caption": f"chord {i}",
                     "split": "test" if i == 3 else "train"})
    (root / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return root


def test_phase_head_recipe_steps_saves_and_resumes(tone_corpus, tmp_path):
    """Two steps on tiny data: finite losses, the head's weights moved, the frozen codec's did not, the codec
    is saved with its head (fp16) and decodes with it; the same command with steps=3 resumes at step 2."""
    import json

    from models.phase_head import PhaseHead
    from musicrl.config import load_config
    from musicrl.recipes import phase_head as recipe

    base = tiny_codec()
    base.save(tmp_path / "base")
    args = [f"corpus={tone_corpus}", f"codec={tmp_path / 'base'}", f"out={tmp_path / 'run'}", "steps=2",
            "batch_size=2", "crop_frames=16", "head.width=24", "head.dilations=[1]", "log_every=1", "save_every=1",
            "eval_clips=1", "resolutions=[256,512]", "max_clips=0"]
    result = recipe.main(load_config(recipe.Config, None, args))
    assert result["step"] == 2 and all(math.isfinite(result[k]) for k in ("head_mel", "head_chroma", "griffin_lim_mel"))
    log = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [1, 2] and all(math.isfinite(r["loss"]) for r in log)
    trained = SpectralCodec.load(tmp_path / "run" / "codec")
    assert trained.phase_head is not None
    state = trained.state_dict()
    assert all(torch.equal(state[k], v) for k, v in base.state_dict().items())  # frozen
    torch.manual_seed(0)
    fresh = PhaseHead(trained.cfg.phase_head)
    assert not torch.equal(fresh.out.weight.half().float(), trained.phase_head.out.weight)
    from safetensors.torch import load_file

    weights = load_file(str(tmp_path / "run" / "codec" / "codec.safetensors"))
    assert weights["phase_head.out.weight"].dtype == torch.float16
    assert weights["decoder.0.weight"].dtype == torch.float32
    codes = trained.encode(sine(440, 0.5, 8000)[None, None])
    assert trained.decode(codes).shape == (1, 1, codes.shape[-1] * 160)
    assert recipe.main(load_config(recipe.Config, None, [*args[:3], "steps=3", *args[4:]]))["step"] == 3


def test_shipped_default_decodes_with_its_phase_head():
    """docs/MODELS.md: the default's codec carries a phase head refined by 2 Griffin-Lim iterations (measured by
    musicrl bench codec); its magnitude decoder is the codec's as before."""
    from models.registry import DEFAULT_DIR

    if not (DEFAULT_DIR / "codec" / "codec.json").is_file():
        pytest.skip("the embedded default is not installed in this checkout")
    codec = SpectralCodec.load(DEFAULT_DIR / "codec")
    assert codec.phase_head is not None and codec.cfg.phase_head_iters == 2
    codes = torch.randint(0, 256, (1, 4, 10), generator=torch.Generator().manual_seed(0))
    out = codec.decode(codes)
    assert out.shape == (1, 1, 3200) and torch.isfinite(out).all() and torch.equal(out, codec.decode(codes))
