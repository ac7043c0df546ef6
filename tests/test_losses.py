"""Hand-computed checks of the objectives in musicrl.losses."""

import math

import pytest
import torch

from musicrl.losses import (
    bradley_terry_loss,
    cfg_distillation_loss,
    kl_regularised_reinforce_loss,
    kl_to_reference,
    masked_mean,
    policy_gradient_loss,
    token_logprobs,
    value_loss,
)

# Two-token distributions used throughout:
#   student s = softmax([0, 0])      = [1/2, 1/2]
#   teacher t = softmax([log 3, 0])  = [3/4, 1/4]
S_LOGITS = [0.0, 0.0]
T_LOGITS = [math.log(3.0), 0.0]


def _one_position(logits):
    """[V] -> [1, 1, 1, V] logits, plus an all-valid mask."""
    return torch.tensor(logits, dtype=torch.float32).view(1, 1, 1, -1)


def _all_valid(shape):
    return torch.ones(shape, dtype=torch.bool)


def test_reverse_kl_hand_value():
    """KL(s‖t) = ½ log(½ / ¾) + ½ log(½ / ¼) = ½ log(2/3) + ½ log 2 = ½ log(4/3) ≈ 0.143841."""
    s, t = _one_position(S_LOGITS), _one_position(T_LOGITS)
    loss = cfg_distillation_loss(s, t, _all_valid((1, 1, 1)))
    assert loss.item() == pytest.approx(0.5 * math.log(4 / 3), abs=1e-6)


def test_forward_kl_hand_value_differs_from_reverse():
    """KL(t‖s) = ¾ log(¾ / ½) + ¼ log(¼ / ½) = ¾ log 1.5 − ¼ log 2 ≈ 0.130812 ≠ 0.143841."""
    s, t = _one_position(S_LOGITS), _one_position(T_LOGITS)
    mask = _all_valid((1, 1, 1))
    fwd = cfg_distillation_loss(s, t, mask, divergence="forward_kl")
    rev = cfg_distillation_loss(s, t, mask, divergence="reverse_kl")
    expected = 0.75 * math.log(1.5) - 0.25 * math.log(2.0)
    assert fwd.item() == pytest.approx(expected, abs=1e-6)
    assert abs(fwd.item() - rev.item()) > 1e-2


def test_gjsd_half_hand_value():
    """β=½: M = ½t + ½s = [5/8, 3/8].
    KL(t‖M) = ¾ log(¾/⅝) + ¼ log(¼/⅜) = ¾ log 1.2 + ¼ log(2/3) ≈ 0.035375
    KL(s‖M) = ½ log(½/⅝) + ½ log(½/⅜) = ½ log 0.8 + ½ log(4/3) ≈ 0.032269
    gJSD = ½ (0.035375 + 0.032269) ≈ 0.033822, below log 2."""
    s, t = _one_position(S_LOGITS), _one_position(T_LOGITS)
    loss = cfg_distillation_loss(s, t, _all_valid((1, 1, 1)), divergence="gjsd", jsd_beta=0.5)
    kl_tm = 0.75 * math.log(1.2) + 0.25 * math.log(2 / 3)
    kl_sm = 0.5 * math.log(0.8) + 0.5 * math.log(4 / 3)
    assert loss.item() == pytest.approx(0.5 * (kl_tm + kl_sm), abs=1e-6)
    assert loss.item() < math.log(2)


def test_gjsd_limits_recover_forward_and_reverse_kl():
    """gJSD_β / β → KL(t‖s) as β → 0 and gJSD_β / (1−β) → KL(s‖t) as β → 1 (error O(β))."""
    torch.manual_seed(0)
    s = torch.randn(2, 2, 3, 5, dtype=torch.float64)
    t = torch.randn(2, 2, 3, 5, dtype=torch.float64)
    mask = _all_valid((2, 2, 3))
    fwd = cfg_distillation_loss(s, t, mask, "forward_kl").item()
    rev = cfg_distillation_loss(s, t, mask, "reverse_kl").item()
    eps = 1e-5
    small = cfg_distillation_loss(s, t, mask, "gjsd", jsd_beta=eps).item() / eps
    large = cfg_distillation_loss(s, t, mask, "gjsd", jsd_beta=1 - eps).item() / eps
    assert small == pytest.approx(fwd, rel=1e-3)
    assert large == pytest.approx(rev, rel=1e-3)
    with pytest.raises(ValueError, match="jsd_beta"):
        cfg_distillation_loss(s, t, mask, "gjsd", jsd_beta=0.0)


@pytest.mark.parametrize("divergence", ["reverse_kl", "forward_kl", "gjsd"])
def test_divergence_of_identical_is_zero(divergence):
    """softmax(x) vs softmax(x + c): same distribution (softmax is shift invariant) → 0."""
    torch.manual_seed(1)
    x = torch.randn(2, 3, 4, 6)
    loss = cfg_distillation_loss(x, x + 2.5, _all_valid((2, 3, 4)), divergence)
    assert loss.item() == pytest.approx(0.0, abs=1e-6)


def test_distillation_mask_excludes_positions():
    """Position (0,0,0) holds the hand example (KL = ½ log(4/3)); position (0,0,1) is masked and
    holds garbage. The masked mean over the single valid position must be ½ log(4/3), whatever
    the masked logits are."""
    s = torch.zeros(1, 1, 2, 2)
    t = torch.zeros(1, 1, 2, 2)
    t[0, 0, 0] = torch.tensor(T_LOGITS)
    mask = torch.tensor([[[True, False]]])
    base = cfg_distillation_loss(s, t, mask)
    s2, t2 = s.clone(), t.clone()
    s2[0, 0, 1] = torch.tensor([10.0, -10.0])
    t2[0, 0, 1] = torch.tensor([-7.0, 7.0])
    assert base.item() == pytest.approx(0.5 * math.log(4 / 3), abs=1e-6)
    assert cfg_distillation_loss(s2, t2, mask).item() == pytest.approx(base.item(), abs=1e-7)


def test_distillation_gradient_flows_only_to_student():
    """The teacher is detached: its .grad stays None; the student gets a non-zero gradient, and
    none at masked positions."""
    torch.manual_seed(2)
    s = torch.randn(2, 2, 3, 4, requires_grad=True)
    t = torch.randn(2, 2, 3, 4, requires_grad=True)
    mask = _all_valid((2, 2, 3))
    mask[1, :, 2] = False
    cfg_distillation_loss(s, t, mask).backward()
    assert t.grad is None
    assert s.grad is not None and s.grad.abs().sum() > 0
    assert torch.all(s.grad[1, :, 2] == 0)


def test_distillation_shape_errors():
    s = torch.zeros(1, 1, 2, 3)
    with pytest.raises(ValueError, match="same shape"):
        cfg_distillation_loss(s, torch.zeros(1, 1, 2, 4), _all_valid((1, 1, 2)))
    with pytest.raises(ValueError, match="mask"):
        cfg_distillation_loss(s, s, _all_valid((1, 2, 1)))
    with pytest.raises(TypeError, match="bool"):
        cfg_distillation_loss(s, s, torch.ones(1, 1, 2))
    with pytest.raises(ValueError, match="unknown divergence"):
        cfg_distillation_loss(s, s, _all_valid((1, 1, 2)), divergence="tv")


def test_masked_mean_empty_mask_is_zero():
    """No valid position: 0 / max(0, 1) = 0, not NaN."""
    x = torch.ones(1, 1, 2)
    assert masked_mean(x, torch.zeros(1, 1, 2, dtype=torch.bool)).item() == 0.0


def test_policy_gradient_loss_hand_value():
    """B=2, K=1, T=2. Sequence 0: logprobs [−1, −2] (both valid) → Σ = −3, A=2.
    Sequence 1: logprobs [−0.5, −4] (2nd masked) → Σ = −0.5, A=−1.
    normalize='sequences': −(2·(−3) + (−1)·(−0.5)) / 2 = −(−6 + 0.5)/2 = 2.75.
    normalize='tokens': −(−5.5) / 3 valid tokens = 5.5/3."""
    logprobs = torch.tensor([[[-1.0, -2.0]], [[-0.5, -4.0]]], requires_grad=True)
    adv = torch.tensor([2.0, -1.0])
    mask = torch.tensor([[[True, True]], [[True, False]]])
    assert policy_gradient_loss(logprobs, adv, mask).item() == pytest.approx(2.75)
    loss = policy_gradient_loss(logprobs, adv, mask, normalize="tokens")
    assert loss.item() == pytest.approx(5.5 / 3)
    # d loss / d logprob = −A_b / 3 at valid positions, 0 at the masked one.
    loss.backward()
    expected = torch.tensor([[[-2 / 3, -2 / 3]], [[1 / 3, 0.0]]])
    torch.testing.assert_close(logprobs.grad, expected)


def test_policy_gradient_per_token_advantages_match_sequence_level():
    """A per-token advantage constant over the sequence equals the [B] form."""
    torch.manual_seed(3)
    logprobs = -torch.rand(3, 2, 4)
    adv = torch.tensor([0.5, -1.0, 2.0])
    mask = torch.rand(3, 2, 4) > 0.3
    a = policy_gradient_loss(logprobs, adv, mask)
    b = policy_gradient_loss(logprobs, adv[:, None, None].expand(3, 2, 4), mask)
    assert a.item() == pytest.approx(b.item(), abs=1e-6)
    with pytest.raises(ValueError, match="advantages"):
        policy_gradient_loss(logprobs, torch.zeros(2), mask)


def test_kl_to_reference_hand_value_and_reductions():
    """B=2, K=1, T=2, V=2. Sequence 0: both steps π=s, π0=t → 2 · ½ log(4/3) = log(4/3).
    Sequence 1: step 0 identical (KL 0), step 1 masked (garbage) → 0.
    'mean' = log(4/3)/2; 'sum' = log(4/3); 'token_mean' = log(4/3) / 3 valid tokens."""
    pol = torch.zeros(2, 1, 2, 2)
    ref = torch.zeros(2, 1, 2, 2)
    ref[0, 0, :] = torch.tensor(T_LOGITS)
    pol[1, 0, 1] = torch.tensor([5.0, -5.0])
    mask = torch.tensor([[[True, True]], [[True, False]]])
    per_seq = kl_to_reference(pol, ref, mask)
    torch.testing.assert_close(per_seq, torch.tensor([math.log(4 / 3), 0.0]))
    assert kl_to_reference(pol, ref, mask, "mean").item() == pytest.approx(math.log(4 / 3) / 2)
    assert kl_to_reference(pol, ref, mask, "sum").item() == pytest.approx(math.log(4 / 3))
    assert kl_to_reference(pol, ref, mask, "token_mean").item() == pytest.approx(math.log(4 / 3) / 3)


def test_kl_to_reference_identical_is_zero_and_ref_detached():
    torch.manual_seed(4)
    pol = torch.randn(2, 2, 3, 5, requires_grad=True)
    ref = pol.detach().clone().requires_grad_(True)
    kl = kl_to_reference(pol, ref, _all_valid((2, 2, 3)))
    torch.testing.assert_close(kl, torch.zeros(2), atol=1e-6, rtol=0)
    kl.sum().backward()
    assert ref.grad is None


def test_bradley_terry_equal_rewards_is_log2():
    """σ(0) = ½ → −log ½ = log 2."""
    r = torch.tensor([0.3, -1.2, 4.0])
    assert bradley_terry_loss(r, r.clone()).item() == pytest.approx(math.log(2))


def test_bradley_terry_hand_value_and_margin():
    """r⁺ − r⁻ = log 3 → σ(log 3) = 3/(3+1) = ¾ → loss = −log(¾) ≈ 0.287682.
    With r⁺ − r⁻ = log 3 + 1 and margin 1 the loss is the same."""
    chosen = torch.tensor([math.log(3.0)])
    rejected = torch.tensor([0.0])
    assert bradley_terry_loss(chosen, rejected).item() == pytest.approx(-math.log(0.75))
    assert bradley_terry_loss(chosen + 1.0, rejected, margin=1.0).item() == pytest.approx(-math.log(0.75))
    assert bradley_terry_loss(chosen + 1.0, rejected, margin=torch.tensor([1.0])).item() == pytest.approx(
        -math.log(0.75)
    )
    with pytest.raises(ValueError, match="\\[B\\]"):
        bradley_terry_loss(torch.zeros(2, 1), torch.zeros(2, 1))


def test_value_loss_hand_value():
    """values [1, 2, 3], returns [0, 0, 0], last masked → (1² + 2²)/2 = 2.5; returns detached."""
    values = torch.tensor([[[1.0, 2.0, 3.0]]], requires_grad=True)
    returns = torch.zeros(1, 1, 3, requires_grad=True)
    mask = torch.tensor([[[True, True, False]]])
    loss = value_loss(values, returns, mask)
    assert loss.item() == pytest.approx(2.5)
    loss.backward()
    assert returns.grad is None
    torch.testing.assert_close(values.grad, torch.tensor([[[1.0, 2.0, 0.0]]]))  # 2(v−G)/2


def _reinforce_inputs():
    torch.manual_seed(5)
    b, k, t, v = 3, 2, 4, 5
    pol = torch.randn(b, k, t, v, requires_grad=True)
    ref = torch.randn(b, k, t, v)
    tokens = torch.randint(0, v, (b, k, t))
    rewards = torch.tensor([1.0, -0.5, 2.0])
    values = torch.randn(b, k, t, requires_grad=True)
    mask = torch.rand(b, k, t) > 0.2
    return pol, ref, tokens, rewards, values, mask


def test_kl_regularised_reinforce_composes_parts():
    """loss = (1−α)·PG(logπ, G−V) + α·mean_b KL_b + c·MSE(V, G), checked term by term for α=0.3."""
    pol, ref, tokens, rewards, values, mask = _reinforce_inputs()
    alpha, c = 0.3, 0.5
    out = kl_regularised_reinforce_loss(pol, ref, tokens, rewards, values, mask, alpha=alpha, value_coef=c)
    g = rewards[:, None, None].expand_as(values)
    pg = policy_gradient_loss(token_logprobs(pol, tokens), (g - values).detach(), mask)
    kl = kl_to_reference(pol, ref, mask, "mean")
    vl = value_loss(values, g, mask)
    assert out.policy_loss.item() == pytest.approx(pg.item(), abs=1e-6)
    assert out.kl.item() == pytest.approx(kl.item(), abs=1e-6)
    assert out.value_loss.item() == pytest.approx(vl.item(), abs=1e-6)
    expected = (1 - alpha) * pg.item() + alpha * kl.item() + c * vl.item()
    assert out.loss.item() == pytest.approx(expected, abs=1e-5)
    assert out.kl_per_sequence.shape == (3,)
    assert torch.all(out.advantages[~mask] == 0)


def test_kl_regularised_reinforce_gradient_routing():
    """α=1: only the KL (and value) terms remain. The value head gets gradient only from the MSE
    (advantages are detached), so with value_coef=0 its gradient is exactly zero even when the
    policy-gradient term is active (α=½)."""
    pol, ref, tokens, rewards, values, mask = _reinforce_inputs()
    out = kl_regularised_reinforce_loss(pol, ref, tokens, rewards, values, mask, alpha=1.0, value_coef=0.0)
    assert out.loss.item() == pytest.approx(kl_to_reference(pol, ref, mask, "mean").item(), abs=1e-6)
    mixed = kl_regularised_reinforce_loss(pol, ref, tokens, rewards, values, mask, alpha=0.5, value_coef=0.0)
    mixed.loss.backward()
    assert values.grad is None or torch.all(values.grad == 0)
    assert pol.grad is not None and pol.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="alpha"):
        kl_regularised_reinforce_loss(pol, ref, tokens, rewards, values, mask, alpha=1.5)


def test_token_logprobs_matches_log_softmax():
    """softmax([log 3, 0]) = [¾, ¼]: token 0 → log ¾, token 1 → log ¼."""
    logits = torch.tensor([math.log(3.0), 0.0]).view(1, 1, 1, 2).expand(1, 1, 2, 2)
    lp = token_logprobs(logits, torch.tensor([[[0, 1]]]))
    torch.testing.assert_close(lp, torch.tensor([[[math.log(0.75), math.log(0.25)]]]))


def test_soft_bradley_terry_hand_values():
    """d = r_a − r_b. Equal rewards: −[y log ½ + (1−y) log ½] = log 2 for any y.
    y = 1, d = log 3: −log σ(log 3) = −log ¾ (= bradley_terry_loss). y = 0, d = log 3: −log σ(−log 3) = −log ¼.
    y = ½, d = 2: ½(softplus(−2) + softplus(2)) = ½(0.126928 + 2.126928) = 1.126928."""
    from musicrl.losses import soft_bradley_terry_loss

    r = torch.tensor([0.3, -1.2, 4.0])
    assert soft_bradley_terry_loss(r, r.clone(), torch.tensor([1.0, 0.5, 0.0])).item() == pytest.approx(math.log(2))
    a, b = torch.tensor([math.log(3.0)]), torch.tensor([0.0])
    assert soft_bradley_terry_loss(a, b, torch.tensor([1.0])).item() == pytest.approx(-math.log(0.75))
    assert soft_bradley_terry_loss(a, b, torch.tensor([1.0])).item() == pytest.approx(bradley_terry_loss(a, b).item())
    assert soft_bradley_terry_loss(a, b, torch.tensor([0.0])).item() == pytest.approx(-math.log(0.25))
    tie = soft_bradley_terry_loss(torch.tensor([2.0]), torch.tensor([0.0]), torch.tensor([0.5])).item()
    assert tie == pytest.approx(0.5 * (math.log1p(math.exp(-2)) + math.log1p(math.exp(2))))
    assert tie == pytest.approx(1.126928, abs=1e-6)
    with pytest.raises(ValueError, match="\\[0, 1\\]"):
        soft_bradley_terry_loss(a, b, torch.tensor([1.5]))
    with pytest.raises(ValueError, match="\\[B\\]"):
        soft_bradley_terry_loss(a, b, torch.tensor([1.0, 0.0]))
