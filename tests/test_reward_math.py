"""Hand-computed checks of evaluation.reward_math."""

import math

import pytest
import torch

from evaluation.reward_math import (
    cosine_adherence,
    diversity_rewards,
    mean_pairwise_diversity,
    mix_rewards,
    quality_from_mos,
)


def test_diversity_identical_is_zero_and_orthogonal_is_one():
    """Identical: 1 − cos = 0. Orthogonal e1, e2 (norms 2 and 3; norm is irrelevant): 1 − 0 = 1."""
    same = torch.tensor([[[1.0, 2.0, 3.0]] * 4])
    torch.testing.assert_close(diversity_rewards(same), torch.zeros(1, 4), atol=1e-6, rtol=0)
    ortho = torch.tensor([[[2.0, 0.0], [0.0, 3.0]]])
    torch.testing.assert_close(diversity_rewards(ortho), torch.ones(1, 2))
    torch.testing.assert_close(mean_pairwise_diversity(ortho), torch.ones(1))


def test_diversity_hand_value_three_samples():
    """G=3: e1=[1,0], e2=[0,1], e3=[1,0]. Dissimilarities: d12=1, d13=0, d23=1.
    r1 = (d12+d13)/2 = ½, r2 = (d12+d23)/2 = 1, r3 = (d13+d23)/2 = ½.
    Mean pairwise = (1 + 0 + 1)/3 = ⅔ = mean(½, 1, ½)."""
    e = torch.tensor([[[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]]])
    torch.testing.assert_close(diversity_rewards(e), torch.tensor([[0.5, 1.0, 0.5]]))
    torch.testing.assert_close(mean_pairwise_diversity(e), torch.tensor([2 / 3]))


def test_mean_pairwise_equals_mean_of_rewards():
    torch.manual_seed(0)
    e = torch.randn(5, 4, 8)
    torch.testing.assert_close(mean_pairwise_diversity(e), diversity_rewards(e).mean(dim=1))


def test_diversity_requires_two_generations():
    with pytest.raises(ValueError, match="G=2"):
        diversity_rewards(torch.randn(3, 1, 4))
    with pytest.raises(ValueError, match="G=2"):
        mean_pairwise_diversity(torch.randn(3, 1, 4))
    with pytest.raises(ValueError, match=r"\[B, G, D\]"):
        diversity_rewards(torch.randn(3, 4))


def test_cosine_adherence_hand_values():
    """text [1,0] vs audio [1,1]: cos = 1/√2. Per-segment audio [[1,0], [0,1], [−1,0]] with the
    third segment masked: mean(1, 0) = ½; unmasked: mean(1, 0, −1) = 0."""
    text = torch.tensor([[1.0, 0.0]])
    got = cosine_adherence(text, torch.tensor([[1.0, 1.0]]))
    torch.testing.assert_close(got, torch.tensor([1 / math.sqrt(2)]))
    segs = torch.tensor([[[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]]])
    torch.testing.assert_close(cosine_adherence(text, segs), torch.tensor([0.0]))
    seg_mask = torch.tensor([[True, True, False]])
    torch.testing.assert_close(cosine_adherence(text, segs, seg_mask), torch.tensor([0.5]))
    with pytest.raises(ValueError, match="audio_emb"):
        cosine_adherence(text, torch.ones(1, 3))


def test_quality_from_mos():
    """(mos − 1)/4: 1 → 0, 3 → ½, 5 → 1; out of range clamped."""
    got = quality_from_mos(torch.tensor([1.0, 3.0, 5.0, 6.0]))
    torch.testing.assert_close(got, torch.tensor([0.0, 0.5, 1.0, 1.0]))


def test_mix_rewards_hand_value_and_validation():
    """0.7·[1, 0] + 0.3·[0.5, 1] = [0.85, 0.3]."""
    r = {"mulan": torch.tensor([1.0, 0.0]), "quality": torch.tensor([0.5, 1.0])}
    got = mix_rewards(r, {"mulan": 0.7, "quality": 0.3})
    torch.testing.assert_close(got, torch.tensor([0.85, 0.3]))
    with pytest.raises(ValueError, match="quality"):
        mix_rewards(r, {"mulan": 1.0})
    with pytest.raises(ValueError, match="user"):
        mix_rewards(r, {"mulan": 1.0, "quality": 1.0, "user": 1.0})
    with pytest.raises(ValueError, match="shape"):
        mix_rewards({"a": torch.ones(2), "b": torch.ones(3)}, {"a": 1.0, "b": 1.0})
    with pytest.raises(ValueError, match="finite"):
        mix_rewards(r, {"mulan": float("nan"), "quality": 0.3})
