import pytest
import torch

from models.errors import InputError
from models.generator import sample_codes
from models.lm import TextStates
from models.sampling import SamplingParams, apply_cfg


def test_batched_cfg_equals_two_pass_cfg(debug_gen):
    """Greedy CFG decoding in one [cond; null] batch equals running two separate passes per step."""
    lm, params = debug_gen.lm, SamplingParams(cfg=3.0, greedy=True)
    text = debug_gen.encode_text(["upbeat techno", "calm piano"])
    codes, _ = sample_codes(lm, text, 12, params, [0, 0])
    # two-pass reference: full teacher-forced forwards with the condition and with the null condition
    from models.delay import build_delayed, lm_inputs

    null = TextStates(torch.zeros(2, 1, text.states.shape[-1]), torch.zeros(2, 1, dtype=torch.bool))
    inputs = lm_inputs(build_delayed(codes, lm.cfg.special_token), lm.cfg.special_token)
    guided = apply_cfg(lm(inputs, text), lm(inputs, null), 3.0)
    from models.delay import delay_valid_mask, revert_delayed

    valid = delay_valid_mask(4, inputs.shape[-1])
    greedy = torch.where(valid, guided.argmax(-1), lm.cfg.special_token)
    assert torch.equal(revert_delayed(greedy), codes)


def test_gamma_one_skips_the_unconditional_pass(debug_gen, monkeypatch):
    rows = []
    real_step = debug_gen.lm.step
    monkeypatch.setattr(
        debug_gen.lm, "step", lambda tok, pos, cache: rows.append(tok.shape[0]) or real_step(tok, pos, cache)
    )
    debug_gen.generate_codes(["a b"], 0.1, SamplingParams(cfg=1.0), seeds=0)
    assert set(rows) == {1}
    rows.clear()
    debug_gen.generate_codes(["a b"], 0.1, SamplingParams(cfg=3.0), seeds=0)
    assert set(rows) == {2}


def test_gamma_one_equals_conditional_logits(debug_gen):
    """At gamma = 1 greedy codes are the argmax of the conditional logits alone."""
    text = debug_gen.encode_text(["jazz"])
    a, _ = sample_codes(debug_gen.lm, text, 8, SamplingParams(cfg=1.0, greedy=True), [0])
    from models.delay import build_delayed, delay_valid_mask, lm_inputs, revert_delayed

    special = debug_gen.lm.cfg.special_token
    inputs = lm_inputs(build_delayed(a, special), special)
    greedy = torch.where(delay_valid_mask(4, inputs.shape[-1]), debug_gen.lm(inputs, text).argmax(-1), special)
    assert torch.equal(revert_delayed(greedy), a)


def test_prompts_times_samples_in_one_batch(debug_gen):
    out = debug_gen.generate_codes(
        ["rock", "jazz"], 0.2, SamplingParams(), seeds=5, samples_per_prompt=3, return_logprobs=True
    )
    assert out.codes.shape == (6, 4, 10)
    assert out.prompts == ["rock"] * 3 + ["jazz"] * 3
    assert out.seeds == [5, 6, 7, 8, 9, 10]
    assert out.logprobs.shape == out.codes.shape and (out.logprobs <= 0).all()
    # each row reproduces alone with its own seed
    alone = debug_gen.generate_codes(["jazz"], 0.2, SamplingParams(), seeds=9)
    assert torch.equal(alone.codes[0], out.codes[4])


def test_same_seed_same_codes_different_seed_differs(debug_gen):
    p = SamplingParams()
    a = debug_gen.generate_codes(["x"], 0.4, p, seeds=1).codes
    assert torch.equal(a, debug_gen.generate_codes(["x"], 0.4, p, seeds=1).codes)
    assert not torch.equal(a, debug_gen.generate_codes(["x"], 0.4, p, seeds=2).codes)


def test_audio_length_follows_duration(debug_gen):
    out = debug_gen.generate(["x"], 0.5, SamplingParams(), seeds=0)
    assert out.codes.shape[-1] == 25
    assert out.audio.shape == (1, 1, 25 * debug_gen.sample_rate // 50)
    assert out.audio.abs().max() <= 1


@pytest.mark.parametrize("prompt", ["", "   ", "x" * 1001])
def test_bad_prompt(debug_gen, prompt):
    with pytest.raises(InputError):
        debug_gen.generate_codes([prompt], 0.1, SamplingParams())


@pytest.mark.parametrize("duration", [0, -1, 1e6])
def test_bad_duration(debug_gen, duration):
    with pytest.raises(InputError):
        debug_gen.generate_codes(["x"], duration, SamplingParams())


def test_a_plan_is_checked_once_and_concatenated_plans_sample_their_rows_alike(debug_gen, monkeypatch):
    """plan() checks (here a prompt with an ANSI escape); sample() checks nothing again; two plans of one model
    concatenated give each row the codes it gets alone (rows depend only on their own seed)."""
    from models import generator

    params = SamplingParams(cfg=3.0, top_k=20)
    with pytest.raises(InputError, match="control or binary character"):
        debug_gen.plan(["calm \x1b[31m piano"], 0.2, params)
    one = debug_gen.plan(["calm piano"], 0.2, params, seeds=[5, 6], samples_per_prompt=2)
    two = debug_gen.plan(["fast techno"], 0.2, params, seeds=[9])
    assert one.rows == ["calm piano", "calm piano"] and (one.frames, one.seeds) == (10, (5, 6))
    calls = []
    monkeypatch.setattr(generator, "validate_prompt", lambda p: calls.append(p) or p)
    both = debug_gen.sample(generator.GenerationPlan.concat([one, two]))
    assert calls == [] and both.prompts == ["calm piano", "calm piano", "fast techno"]
    assert torch.equal(both.codes[:2], debug_gen.sample(one).codes)
    assert torch.equal(both.codes[2:], debug_gen.sample(two).codes)
    assert torch.equal(debug_gen.generate_codes(["calm piano"], 0.2, params, [5, 6], 2).codes, both.codes[:2])
