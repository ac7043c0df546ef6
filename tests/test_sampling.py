import math

import pytest
import torch

from models.sampling import SamplingParams, apply_cfg, candidate_logprobs, make_generators, sample_next


def test_apply_cfg_formula_and_limits():
    cond, uncond = torch.tensor([2.0, 0.0]), torch.tensor([1.0, 1.0])
    # uncond + 3 (cond - uncond) = [1 + 3, 1 - 3]
    assert apply_cfg(cond, uncond, 3.0).tolist() == [4.0, -2.0]
    assert torch.equal(apply_cfg(cond, uncond, 1.0), cond)
    assert torch.equal(apply_cfg(cond, uncond, 0.0), uncond)
    with pytest.raises(ValueError):
        apply_cfg(cond, uncond[:1], 2.0)


def test_top_k_keeps_k_best():
    logits = torch.tensor([[1.0, 4.0, 3.0, 2.0]])
    logp, index = candidate_logprobs(logits, SamplingParams(top_k=2))
    assert index.tolist() == [[1, 2]]
    torch.testing.assert_close(logp, torch.tensor([[4.0, 3.0]]).log_softmax(-1))


def test_top_p_keeps_smallest_nucleus():
    probs = torch.tensor([[0.5, 0.3, 0.15, 0.05]])
    logp, index = candidate_logprobs(probs.log(), SamplingParams(top_k=0, top_p=0.7))
    # 0.5 < 0.7, 0.5 + 0.3 >= 0.7 -> keep the first two, renormalised: 0.5/0.8, 0.3/0.8
    assert index.tolist() == [[0, 1, 2, 3]]
    torch.testing.assert_close(logp.exp(), torch.tensor([[0.625, 0.375, 0.0, 0.0]]))
    logp, _ = candidate_logprobs(probs.log(), SamplingParams(top_k=0, top_p=0.01))
    assert torch.isfinite(logp).tolist() == [[True, False, False, False]]


def test_no_filter_keeps_all_codes_in_order():
    logits = torch.tensor([[0.0, 1.0, 2.0]])
    logp, index = candidate_logprobs(logits, SamplingParams(top_k=0))
    assert index is None
    torch.testing.assert_close(logp, logits.log_softmax(-1))


def test_temperature_divides_logits():
    logits = torch.tensor([[2.0, 4.0]])
    logp, _ = candidate_logprobs(logits, SamplingParams(temperature=2.0, top_k=0))
    torch.testing.assert_close(logp, torch.tensor([[1.0, 2.0]]).log_softmax(-1))


def test_greedy_is_argmax_with_logprob():
    logits = torch.tensor([[[0.0, 3.0, 1.0]]])
    codes, logp = sample_next(logits, SamplingParams(greedy=True), None)
    assert codes.tolist() == [[1]]
    assert logp.item() == pytest.approx(3.0 - math.log(1 + math.exp(3) + math.e))


def test_seeded_rows_are_deterministic_and_independent():
    logits = torch.randn(3, 4, 50)
    p = SamplingParams(top_k=0)
    a, _ = sample_next(logits, p, make_generators([1, 2, 3]))
    b, _ = sample_next(logits, p, make_generators([1, 2, 3]))
    assert torch.equal(a, b)
    # a row's draw depends on its own seed only, not on its batch mates
    c, _ = sample_next(logits[1:2], p, make_generators([2]))
    assert torch.equal(c[0], a[1])


@pytest.mark.parametrize("top_k", [0, 2])
def test_sampling_frequencies_follow_the_distribution(top_k):
    probs = torch.tensor([0.6, 0.1, 0.3])
    logits = probs.log().expand(1, 4000, 3).contiguous()
    codes, logp = sample_next(logits, SamplingParams(top_k=top_k), make_generators([7]))
    freq = torch.bincount(codes.flatten(), minlength=3).float() / 4000
    expected = probs if top_k == 0 else torch.tensor([0.6, 0.0, 0.3]) / 0.9
    torch.testing.assert_close(freq, expected, atol=0.03, rtol=0)
    torch.testing.assert_close(logp, expected.log()[codes])


def test_invalid_params_rejected():
    for bad in [dict(cfg=-1), dict(temperature=0), dict(top_p=0), dict(top_p=1.5), dict(top_k=-1)]:
        with pytest.raises(ValueError):
            SamplingParams(**bad).validate()
