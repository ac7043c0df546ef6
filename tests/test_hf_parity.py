"""Our stack against transformers' MusicGen on the same (tiny, random) weights."""

import shutil

import pytest
import torch

from models.delay import build_delayed, lm_inputs
from models.errors import InputError
from models.hf_musicgen import load_hf_musicgen
from models.lm import TextStates
from models.sampling import SamplingParams, apply_cfg

PROMPTS = ["upbeat techno with a synth lead", "calm piano"]


@pytest.fixture(scope="module")
def ours(tiny_hf_dir):
    return load_hf_musicgen(tiny_hf_dir)


def _hf_codes(hf, tokenizer, prompts, gamma, frames):
    """transformers' greedy MusicGen generate; its codes are captured where it hands them to EnCodec."""
    captured = {}
    decode = hf.audio_encoder.decode

    def spy(codes, *args, **kwargs):
        captured["codes"] = codes
        return decode(codes, *args, **kwargs)

    hf.audio_encoder.decode = spy
    try:
        enc = tokenizer(prompts, padding=True, return_tensors="pt")
        audio = hf.generate(**enc, do_sample=False, guidance_scale=gamma, max_new_tokens=frames + 3)
    finally:
        hf.audio_encoder.decode = decode
    return captured["codes"][0], audio


def test_teacher_forced_logits_match_with_and_without_cfg(ours, tiny_hf_model):
    hf, tokenizer = tiny_hf_model
    enc = tokenizer(PROMPTS, padding=True, return_tensors="pt")
    codes = torch.randint(0, 64, (2, 4, 15), generator=torch.Generator().manual_seed(0))
    inputs = lm_inputs(build_delayed(codes, 64), 64)
    with torch.no_grad():
        theirs = hf(**enc, decoder_input_ids=inputs.reshape(8, -1)).logits.reshape(2, 4, -1, 64)
        theirs_null = hf(
            input_ids=enc.input_ids,
            attention_mask=torch.zeros_like(enc.attention_mask),
            decoder_input_ids=inputs.reshape(8, -1),
        ).logits.reshape(2, 4, -1, 64)
        text = ours.encode_text(PROMPTS)
        mine = ours.lm(inputs, text)
        null = TextStates(torch.zeros(2, 1, text.states.shape[-1]), torch.zeros(2, 1, dtype=torch.bool))
        mine_null = ours.lm(inputs, null)
    torch.testing.assert_close(mine, theirs, atol=1e-4, rtol=0)
    torch.testing.assert_close(apply_cfg(mine, mine_null, 3.0), apply_cfg(theirs, theirs_null, 3.0), atol=1e-4, rtol=0)


@pytest.mark.parametrize("gamma", [1.0, 3.0])
def test_greedy_codes_and_audio_identical(ours, tiny_hf_model, gamma):
    hf, tokenizer = tiny_hf_model
    theirs, their_audio = _hf_codes(hf, tokenizer, PROMPTS, gamma, frames=25)
    out = ours.generate(PROMPTS, 0.5, SamplingParams(cfg=gamma, greedy=True))
    assert torch.equal(out.codes, theirs)
    assert torch.equal(out.audio, their_audio.clamp(-1, 1))


def test_cli_generate_on_hf_dir_gives_transformers_codes(tiny_hf_dir, tiny_hf_model, tmp_path):
    import numpy as np

    from musicrl.cli import main

    hf, tokenizer = tiny_hf_model
    theirs, _ = _hf_codes(hf, tokenizer, [PROMPTS[0]], 3.0, frames=25)
    rc = main(
        [
            "generate",
            PROMPTS[0],
            "--model",
            str(tiny_hf_dir),
            "--duration",
            "0.5",
            "--greedy",
            "--cfg",
            "3",
            "--save-codes",
            "--out",
            str(tmp_path),
        ]
    )
    assert rc == 0
    (npy,) = tmp_path.glob("*.npy")
    assert np.array_equal(np.load(npy, allow_pickle=False), theirs[0].numpy())


def test_pickle_only_hf_dir_is_refused(tiny_hf_dir, tmp_path):
    bad = tmp_path / "bad"
    shutil.copytree(tiny_hf_dir, bad)
    (bad / "model.safetensors").unlink()
    (bad / "pytorch_model.bin").write_bytes(b"\x80\x04pickle")
    with pytest.raises(InputError, match="pickle"):
        load_hf_musicgen(bad)
