"""musicrl.rollouts: sampled through the generator, scored teacher-forced; the invariants that tie them."""

from __future__ import annotations

import copy

import pytest
import torch

from models.debug import debug_generator
from models.delay import revert_delayed
from models.sampling import SamplingParams, apply_cfg
from musicrl.rollouts import sample_rollout, score_rollout

FULL = SamplingParams(cfg=1.0, temperature=1.0, top_k=0)  # on-policy: the full distribution


@pytest.fixture(scope="module")
def rollout():
    gen = debug_generator(seed=1)
    return gen, sample_rollout(gen, ["calm piano", "fast techno"], [5, 6, 7, 8], 0.2, FULL, samples_per_prompt=2)


def test_rollout_is_the_generators_own_sample(rollout):
    """Same seeds -> the codes generate_codes gives; rows prompt-major; delayed/inputs/mask on the pattern."""
    gen, r = rollout
    out = gen.generate_codes(["calm piano", "fast techno"], 0.2, FULL, [5, 6, 7, 8], samples_per_prompt=2)
    assert torch.equal(r.codes, out.codes) and r.prompts == ["calm piano"] * 2 + ["fast techno"] * 2
    n, k, t = r.codes.shape
    assert r.delayed.shape == r.inputs.shape == r.mask.shape == (n, k, t + k - 1) and r.num_prompts == 2
    assert int(r.mask.sum()) == n * k * t  # every code sits at exactly one valid position
    assert torch.equal(revert_delayed(r.delayed), r.codes)
    special = gen.lm.cfg.special_token
    assert torch.equal(r.inputs[..., 1:], r.delayed[..., :-1]) and (r.inputs[..., 0] == special).all()


def test_teacher_forced_logprobs_equal_the_sampling_logprobs(rollout):
    """Scoring the sampled sequences teacher-forced (full forward) gives the log-probabilities the KV-cached
    sampler drew them with: the rollout scores what was actually sampled."""
    gen, r = rollout
    sampled = gen.generate_codes(["calm piano", "fast techno"], 0.2, FULL, [5, 6, 7, 8], 2, return_logprobs=True)
    scored = score_rollout(r, policy=gen.lm.eval())
    k = gen.lm.cfg.num_codebooks
    torch.testing.assert_close(revert_delayed(scored.policy_logprobs.detach()), sampled.logprobs, atol=1e-4, rtol=1e-4)
    assert scored.policy_logits.requires_grad and k == r.codes.shape[1]


def test_teacher_is_cfg_of_two_passes_and_gamma_one_is_the_reference(rollout):
    gen, r = rollout
    frozen = copy.deepcopy(gen.lm).eval().requires_grad_(False)
    s = score_rollout(r, reference=frozen, teacher=frozen, teacher_cfg=3.0)
    null = frozen(r.inputs, r.text.null())
    torch.testing.assert_close(s.teacher_logits, apply_cfg(s.reference_logits, null, 3.0))
    one = score_rollout(r, reference=frozen, teacher=frozen, teacher_cfg=1.0)
    assert torch.equal(one.teacher_logits, one.reference_logits)
    assert not s.teacher_logits.requires_grad and s.policy_logits is None
    with pytest.raises(ValueError, match="policy"):
        _ = s.policy_logprobs
    assert (s.reference_logprobs[~r.mask] == 0).all() and (s.teacher_logprobs[r.mask] < 0).all()


def test_sequence_kl_is_the_recipes_kl_of_a_scored_rollout(rollout):
    from models.debug import seeded_lm
    from musicrl.losses import kl_to_reference
    from musicrl.rollouts import sequence_kl

    gen, rollout = rollout
    other = seeded_lm(gen.lm.cfg, 5).eval()
    scored = score_rollout(rollout, policy=gen.lm.eval(), reference=other)
    expected = kl_to_reference(scored.policy_logits, scored.reference_logits, scored.mask)
    got = sequence_kl(gen.lm, other, rollout.text, rollout.codes, batch=3)  # batching changes nothing
    assert got.shape == (rollout.codes.shape[0],) and torch.allclose(got, expected, atol=1e-4)
    assert torch.all(got > 0) and torch.allclose(sequence_kl(gen.lm, gen.lm, rollout.text, rollout.codes),
                                                  torch.zeros_like(got), atol=1e-5)
