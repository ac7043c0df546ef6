"""Continuation (an audio prefix forced through the delay pattern) and long form (sliding windows)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from models import generator
from models.audio_io import mono_at_rate
from models.conditioners import DebugConditioner
from models.debug import debug_lm_config, seeded_lm
from models.delay import build_delayed, delay_valid_mask, lm_inputs
from models.errors import InputError
from models.generator import MusicGenerator, sample_codes, window_seed
from models.long_form import Window, sliding_windows, splice_prompt
from models.sampling import SamplingParams
from models.spectral_codec import SpectralCodec, SpectralCodecConfig

PARAMS = SamplingParams(cfg=3.0, top_k=20)


def spectral_generator(max_duration: float = 10.0) -> MusicGenerator:
    """The embedded default's stack in miniature: MiniLM-sized roles, a random spectral codec at 50 Hz."""
    cfg = debug_lm_config()
    with torch.random.fork_rng():
        torch.manual_seed(1)
        codec = SpectralCodec(SpectralCodecConfig(sample_rate=8000, n_fft=256, hop=160, width=16, latent_dim=8,
                                                  num_blocks=1, num_quantizers=4, codebook_size=64,
                                                  griffin_lim_iters=4)).eval()
    return MusicGenerator(seeded_lm(cfg, 1), DebugConditioner(dim=cfg.cond_dim, seed=1), codec, name="spectral",
                          max_duration=max_duration)


def short_window(gen: MusicGenerator, max_duration: float) -> MusicGenerator:
    return dataclasses.replace(gen, max_duration=max_duration)


def tone(seconds: float, rate: int, channels: int = 1) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    wav = 0.5 * np.sin(2 * np.pi * 440 * t) * (1 + 0.5 * np.sin(2 * np.pi * 3 * t))
    return np.stack([wav] * channels, axis=1) if channels > 1 else wav


# --- pure pieces -------------------------------------------------------------------------------------
def test_sliding_windows_worked_example():
    """25 frames, windows of 10, stride 6 -> context 4: [0,10) [6,16) [12,22) [18,25); new 10+6+6+3 = 25."""
    assert sliding_windows(25, 10, 6) == [Window(0, 10, 0), Window(6, 16, 4), Window(12, 22, 4), Window(18, 25, 4)]
    assert sliding_windows(25, 10, 6, prompt=3)[0] == Window(0, 10, 3)
    assert sliding_windows(8, 10, 6, prompt=2) == [Window(0, 8, 2)]
    assert sum(w.frames - w.context for w in sliding_windows(25, 10, 6, prompt=3)) == 25 - 3
    with pytest.raises(ValueError):
        sliding_windows(25, 10, 10)
    with pytest.raises(ValueError):
        sliding_windows(25, 10, 6, prompt=10)


def test_splice_keeps_the_prompt_verbatim_and_crossfades_linearly():
    """prompt = 1, decoded = 0, fade 3 over the prompt's last 3 samples: 1 1 | 3/4 2/4 1/4 | 0 0 ..."""
    out = splice_prompt(torch.ones(1, 5), torch.zeros(1, 8), fade=3)
    torch.testing.assert_close(out, torch.tensor([[1, 1, 0.75, 0.5, 0.25, 0, 0, 0]]))
    assert torch.equal(splice_prompt(torch.ones(1, 5), torch.zeros(1, 8), fade=0)[:, :5], torch.ones(1, 5))


def test_mono_mixdown_and_resampling():
    stereo = np.stack([np.ones(1000), -np.ones(1000)], axis=1)
    assert np.allclose(mono_at_rate(stereo, 8000, 8000), 0)
    assert mono_at_rate(np.zeros(44100), 44100, 16000).shape == (16000,)
    assert mono_at_rate(np.zeros(1000), 8000, 8000).dtype == np.float32


# --- the LM's prefill -------------------------------------------------------------------------------
def test_prefill_fills_the_cache_as_steps_do(debug_gen):
    """prefill of P positions, then one step == P + 1 steps (cache and logits), with CFG's null rows."""
    lm, text = debug_gen.lm, debug_gen.encode_text(["calm piano", "fast techno"])
    codes = torch.randint(0, 64, (2, 4, 12), generator=torch.Generator().manual_seed(0))
    inputs = torch.cat([lm_inputs(build_delayed(codes, 64), 64)] * 2)  # rows 2, 3: null
    a, b = lm.start_decoding(text, 4, 16), lm.start_decoding(text, 4, 16)
    for s in range(9):
        want = lm.step(inputs[:, :, s], s, a)
    lm.prefill(inputs[:, :, :8], b)
    got = lm.step(inputs[:, :, 8], 8, b)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=0)
    for ka, kb in zip(a.self_k, b.self_k, strict=True):
        torch.testing.assert_close(ka, kb, atol=1e-5, rtol=0)


# --- continuation keeps the prompt ------------------------------------------------------------------
@pytest.mark.parametrize("which", ["spectral", "encodec", "hf"])
def test_continuation_keeps_the_prompt_codes(which, debug_gen, tiny_hf_dir):
    from models.hf_musicgen import load_hf_musicgen

    gen = {"spectral": spectral_generator, "encodec": lambda: debug_gen, "hf": lambda: load_hf_musicgen(tiny_hf_dir)}
    gen = gen[which]()
    prompt = gen.encode_audio(tone(0.3, 44100, channels=2), 44100)
    assert prompt.shape[0] == 4 and prompt.dtype == torch.long and prompt.shape[1] >= 14
    plan = gen.plan(["calm piano"], 0.8, PARAMS, seeds=3, samples_per_prompt=2, prompt_codes=prompt)
    out = gen.sample(plan, return_logprobs=True)
    p = prompt.shape[1]
    assert out.codes.shape == (2, 4, 40)
    assert torch.equal(out.codes[:, :, :p], prompt.expand(2, -1, -1))
    assert torch.equal(out.logprobs[:, :, :p], torch.zeros(2, 4, p))  # forced positions carry no log-prob
    assert (out.logprobs[:, :, p:] < 0).all()  # every generated one does
    assert not torch.equal(out.codes[0, :, p:], out.codes[1, :, p:])  # the rows' own seeds
    audio = gen.decode(out.codes)
    assert audio.shape[0] == 2 and torch.isfinite(audio).all()


def test_teacher_forcing_through_the_delay_pattern(debug_gen):
    """Greedy, no CFG: every generated code after the prefix is the argmax of the teacher-forced logits of
    the whole output (so the forced codes reached the LM at the right delayed positions)."""
    greedy = SamplingParams(cfg=1.0, greedy=True)
    text = debug_gen.encode_text(["calm piano"])
    prefix = torch.randint(0, 64, (1, 4, 7), generator=torch.Generator().manual_seed(2))
    codes, _ = sample_codes(debug_gen.lm, text, 16, greedy, [0], prefix=prefix)
    assert torch.equal(codes[:, :, :7], prefix)
    delayed = build_delayed(codes, 64)
    logits = debug_gen.lm(lm_inputs(delayed, 64), text)
    free = delay_valid_mask(4, 19) & (build_delayed(torch.arange(16).expand(1, 4, 16), -1)[0] >= 7)
    assert torch.equal(logits.argmax(-1)[0][free], delayed[0][free])


def test_no_prefix_is_plain_sampling(debug_gen):
    """An empty prefix (and the window-0 path of a long plan) samples exactly what plain sampling does."""
    text = debug_gen.encode_text(["calm piano"])
    plain = sample_codes(debug_gen.lm, text, 12, PARAMS, [4], return_logprobs=True)
    empty = sample_codes(debug_gen.lm, text, 12, PARAMS, [4], return_logprobs=True,
                         prefix=torch.zeros(1, 4, 0, dtype=torch.long))
    assert torch.equal(plain[0], empty[0]) and torch.equal(plain[1], empty[1])


def test_prompt_checks(debug_gen):
    prompt = debug_gen.encode_audio(tone(0.3, 8000), 8000)
    with pytest.raises(InputError, match="shorter than the requested duration"):
        debug_gen.plan(["x"], 0.2, PARAMS, prompt_codes=prompt)
    with pytest.raises(InputError, match="must lie in"):
        debug_gen.plan(["x"], 1.0, PARAMS, prompt_codes=torch.full((4, 3), 64))
    with pytest.raises(InputError, match="integers"):
        debug_gen.plan(["x"], 1.0, PARAMS, prompt_codes=torch.zeros(3, 3, dtype=torch.long))
    with pytest.raises(InputError, match="empty"):
        debug_gen.encode_audio(np.zeros(0), 8000)


# --- long form ----------------------------------------------------------------------------------------
def test_long_form_windows_continue_the_previous_output(debug_gen, monkeypatch):
    """0.4 s windows (20 frames), stride 0.2 s (10): 1.1 s = 55 frames in windows [0,20) [10,30) [20,40)
    [30,50) [40,55); each window's forced context is the tail of what the earlier windows made; window 0
    is the plain 0.4 s clip; on_step counts every window's steps."""
    gen = short_window(debug_gen, 0.4)
    with pytest.raises(InputError, match="maximum of 0.4 s"):
        gen.plan(["x"], 1.1, PARAMS)
    with pytest.raises(InputError, match="long-form maximum"):
        gen.plan(["x"], 1e4, PARAMS, long_form=True)
    with pytest.raises(InputError, match="extend stride"):
        gen.plan(["x"], 1.1, PARAMS, long_form=True, extend_stride=0.4)
    plan = gen.plan(["calm piano"], 1.1, PARAMS, seeds=7, samples_per_prompt=2, long_form=True, extend_stride=0.2)
    assert [(w.start, w.end, w.context) for w in plan.windows] == [(0, 20, 0), (10, 30, 10), (20, 40, 10),
                                                                   (30, 50, 10), (40, 55, 10)]
    calls, real = [], generator.sample_codes

    def spy(lm, text, frames, params, seeds, return_logprobs=False, on_step=None, prefix=None):
        out = real(lm, text, frames, params, seeds, return_logprobs, on_step, prefix)
        calls.append((prefix.clone(), out[0].clone(), list(seeds)))
        return out

    monkeypatch.setattr(generator, "sample_codes", spy)
    progress = []
    out = gen.sample(plan, return_logprobs=True, on_step=lambda d, t: progress.append((d, t)))
    assert out.codes.shape == (2, 4, 55) and out.logprobs.shape == (2, 4, 55) and (out.logprobs < 0).all()
    assert len(calls) == 5 and calls[0][0].shape[-1] == 0
    for w, (prefix, made, seeds) in enumerate(calls[1:], start=1):
        start = plan.windows[w].start
        assert torch.equal(prefix, calls[w - 1][1][:, :, -10:])  # the previous window's tail
        assert torch.equal(made[:, :, :10], prefix)
        assert torch.equal(out.codes[:, :, start : start + made.shape[-1]], made)
        assert seeds == [window_seed(7, w), window_seed(8, w)]
    monkeypatch.setattr(generator, "sample_codes", real)
    assert torch.equal(out.codes[:, :, :20], gen.generate_codes(["calm piano"], 0.4, PARAMS, 7, 2).codes)
    total = plan.steps(4)
    assert total == 5 * 3 + 4 * 20 + 15 and progress[-1] == (total, total)
    assert all(b[0] >= a[0] for a, b in zip(progress, progress[1:], strict=False))


def test_long_form_continues_a_prompt(monkeypatch):
    gen = short_window(spectral_generator(), 0.4)
    prompt = gen.encode_audio(tone(0.2, 8000), 8000)
    plan = gen.plan(["calm piano"], 1.0, PARAMS, seeds=1, prompt_codes=prompt, long_form=True)
    assert plan.stride == 12 and plan.windows[0] == Window(0, 20, prompt.shape[1])  # default: 0.6 x 20 frames
    out = gen.sample(plan)
    assert out.codes.shape == (1, 4, 50) and torch.equal(out.codes[0, :, : prompt.shape[1]], prompt)


def test_plans_with_prompts_concatenate(debug_gen):
    prompt = debug_gen.encode_audio(tone(0.1, 8000), 8000)
    one = debug_gen.plan(["calm piano"], 0.4, PARAMS, seeds=1, prompt_codes=prompt)
    two = debug_gen.plan(["fast techno"], 0.4, PARAMS, seeds=2, prompt_codes=prompt)
    both = debug_gen.sample(generator.GenerationPlan.concat([one, two]))
    assert torch.equal(both.codes[:1], debug_gen.sample(one).codes)
    assert torch.equal(both.codes[1:], debug_gen.sample(two).codes)
    with pytest.raises(ValueError):
        generator.GenerationPlan.concat([one, debug_gen.plan(["x"], 0.4, PARAMS)])


@pytest.mark.parametrize("gamma", [1.0, 3.0])
def test_greedy_continuation_matches_transformers(gamma, tiny_hf_model, tiny_hf_dir):
    """transformers' MusicGen continuing an audio prompt (``decoder_input_ids`` = start + prompt codes, which
    its generate lays out with the delay pattern) and ours give the same greedy codes, with and without CFG."""
    from models.hf_musicgen import load_hf_musicgen

    hf, tokenizer = tiny_hf_model
    ours = load_hf_musicgen(tiny_hf_dir)
    prompt = ours.encode_audio(tone(0.3, 8000), 8000)
    captured, decode = {}, hf.audio_encoder.decode

    def spy(codes, *args, **kwargs):
        captured["codes"] = codes
        return decode(codes, *args, **kwargs)

    hf.audio_encoder.decode = spy
    try:
        start = torch.full((1, 4, 1), 64)
        hf.generate(**tokenizer(["calm piano"], return_tensors="pt"), do_sample=False, guidance_scale=gamma,
                    decoder_input_ids=torch.cat([start, prompt[None]], -1).reshape(4, -1),
                    max_new_tokens=20 - prompt.shape[1] + 3)
    finally:
        hf.audio_encoder.decode = decode
    theirs = captured["codes"][0]
    plan = ours.plan(["calm piano"], theirs.shape[-1] / ours.frame_rate, SamplingParams(cfg=gamma, greedy=True),
                     prompt_codes=prompt)
    assert torch.equal(ours.sample(plan).codes, theirs)
