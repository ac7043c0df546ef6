"""Hand-computed checks of musicrl.advantages."""

import pytest
import torch

from musicrl.advantages import discounted_returns, leave_one_out_advantages, whiten


def test_leave_one_out_of_1_2_3():
    """[1,2,3]: baselines = mean of siblings = [(2+3)/2, (1+3)/2, (1+2)/2] = [2.5, 2, 1.5]
    → advantages [−1.5, 0, 1.5]."""
    adv = leave_one_out_advantages(torch.tensor([[1.0, 2.0, 3.0]]), group_size=3)
    torch.testing.assert_close(adv, torch.tensor([[-1.5, 0.0, 1.5]]))


def test_leave_one_out_flat_layout_is_prompt_major():
    """[B*G] with G=2: groups (1, 3) and (10, 10). Pairs: 1−3 = −2, 3−1 = 2; 10−10 = 0."""
    adv = leave_one_out_advantages(torch.tensor([1.0, 3.0, 10.0, 10.0]), group_size=2)
    torch.testing.assert_close(adv, torch.tensor([-2.0, 2.0, 0.0, 0.0]))


def test_leave_one_out_equals_scaled_centering_and_is_detached():
    """A_i = G/(G−1) (r_i − mean r), and sums to 0 per group."""
    torch.manual_seed(0)
    r = torch.randn(4, 5, requires_grad=True)
    adv = leave_one_out_advantages(r, 5)
    assert not adv.requires_grad
    torch.testing.assert_close(adv, 5 / 4 * (r - r.mean(dim=1, keepdim=True)).detach())
    torch.testing.assert_close(adv.sum(dim=1), torch.zeros(4), atol=1e-6, rtol=0)


def test_leave_one_out_errors():
    with pytest.raises(ValueError, match="group_size >= 2"):
        leave_one_out_advantages(torch.ones(3), 1)
    with pytest.raises(ValueError, match="multiple"):
        leave_one_out_advantages(torch.ones(5), 2)
    with pytest.raises(ValueError, match="G=3"):
        leave_one_out_advantages(torch.ones(2, 3), 2)


def test_whiten_hand_value_and_mask():
    """[1, 3]: mean 2, population var 1 → [−1, 1]. A masked third entry (100) is ignored and
    returned as 0. shift_mean=False: [1, 3]/1 = [1, 3]."""
    x = torch.tensor([1.0, 3.0, 100.0])
    mask = torch.tensor([True, True, False])
    torch.testing.assert_close(whiten(x, mask, eps=0.0), torch.tensor([-1.0, 1.0, 0.0]))
    torch.testing.assert_close(whiten(x, mask, shift_mean=False, eps=0.0), torch.tensor([1.0, 3.0, 0.0]))
    y = whiten(torch.randn(50))
    assert y.mean().item() == pytest.approx(0.0, abs=1e-5)
    assert y.std(unbiased=False).item() == pytest.approx(1.0, abs=1e-4)


def test_discounted_returns_broadcast_and_discount():
    """R = [2, 4]; mask [B=2, K=2, T=3], sequence 1's last step invalid (delay padding in one
    codebook at t=1 too). γ=1: R broadcast to valid positions.
    γ=½: sequence 0 has t_last=2 → [¼·2, ½·2, 2] = [0.5, 1, 2];
    sequence 1 has t_last=1 → [½·4, 4, 0] = [2, 4, 0]."""
    rewards = torch.tensor([2.0, 4.0])
    mask = torch.ones(2, 2, 3, dtype=torch.bool)
    mask[1, :, 2] = False
    mask[1, 1, 1] = False
    g1 = discounted_returns(rewards, mask, gamma=1.0)
    torch.testing.assert_close(g1, rewards[:, None, None] * mask.float())
    g = discounted_returns(rewards, mask, gamma=0.5)
    torch.testing.assert_close(g[0, 0], torch.tensor([0.5, 1.0, 2.0]))
    torch.testing.assert_close(g[0, 1], torch.tensor([0.5, 1.0, 2.0]))
    torch.testing.assert_close(g[1, 0], torch.tensor([2.0, 4.0, 0.0]))
    torch.testing.assert_close(g[1, 1], torch.tensor([2.0, 0.0, 0.0]))
    # [B, T] masks work the same.
    torch.testing.assert_close(discounted_returns(rewards, mask[:, 0], gamma=0.5), g[:, 0])
    with pytest.raises(ValueError, match="rewards"):
        discounted_returns(torch.ones(3), mask)
