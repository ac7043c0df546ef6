import pytest
import torch

from models.debug import debug_lm_config, seeded_lm
from models.lm import TextStates


def _text(b, length=5, dim=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    mask = torch.ones(b, length, dtype=torch.bool)
    mask[0, 3:] = False  # padded prompt
    return TextStates(torch.randn(b, length, dim, generator=g), mask)


def _tokens(b, s, k=4, v=64, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, v + 1, (b, k, s), generator=g)


def test_causality_by_gradient():
    """d logits[t] / d embedding input[t'] must be zero for t' > t."""
    lm = seeded_lm(debug_lm_config())
    tokens, text = _tokens(1, 8), _text(1)
    x = lm._embed(tokens, 0).detach().requires_grad_(True)
    states, mask = lm.project_text(text)
    h = x
    for layer in lm.layers:
        h = h + layer.self_attn(layer.self_norm(h))
        k, v = layer.cross_attn.keys_values(states)
        h = h + layer.cross_attn.attend(layer.cross_norm(h), k, v, mask)
        h = h + layer.mlp(h)
    out = lm._logits(h)
    t = 4
    out[:, :, t].sum().backward()
    grad = x.grad[0].abs().sum(-1)
    assert grad[: t + 1].gt(0).all()
    assert grad[t + 1 :].eq(0).all()


def test_kv_cache_steps_equal_full_forward():
    lm = seeded_lm(debug_lm_config())
    tokens, text = _tokens(3, 9), _text(3)
    full = lm(tokens, text)
    cache = lm.start_decoding(text, 3, 9)
    steps = torch.stack([lm.step(tokens[:, :, s], s, cache) for s in range(9)], dim=2)
    torch.testing.assert_close(steps, full, atol=1e-5, rtol=1e-5)


def test_null_rows_after_conditioned_rows_equal_null_forward():
    """Decoding with [cond rows; null rows] equals the full forward with an all-masked condition."""
    lm = seeded_lm(debug_lm_config())
    tokens, text = _tokens(2, 6), _text(2)
    null = TextStates(torch.zeros(2, 1, 16), torch.zeros(2, 1, dtype=torch.bool))
    cache = lm.start_decoding(text, 4, 6)
    both = torch.cat([tokens, tokens])
    steps = torch.stack([lm.step(both[:, :, s], s, cache) for s in range(6)], dim=2)
    torch.testing.assert_close(steps[:2], lm(tokens, text), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(steps[2:], lm(tokens, null), atol=1e-5, rtol=1e-5)


def test_null_condition_ignores_text_content():
    lm = seeded_lm(debug_lm_config())
    tokens = _tokens(1, 5)
    a = TextStates(torch.randn(1, 3, 16), torch.zeros(1, 3, dtype=torch.bool))
    b = TextStates(torch.randn(1, 7, 16), torch.zeros(1, 7, dtype=torch.bool))
    torch.testing.assert_close(lm(tokens, a), lm(tokens, b))


def test_condition_changes_logits():
    lm = seeded_lm(debug_lm_config())
    tokens = _tokens(1, 5)
    assert not torch.allclose(lm(tokens, _text(1, seed=0)), lm(tokens, _text(1, seed=3)))


def test_any_size_from_config_and_shape_errors():
    lm = seeded_lm(debug_lm_config(dim=48, num_heads=4, num_layers=3, num_codebooks=2, cardinality=10))
    assert lm(_tokens(2, 4, k=2, v=10), _text(2)).shape == (2, 2, 4, 10)
    with pytest.raises(ValueError):
        lm(_tokens(2, 4, k=3, v=10), _text(2))
    with pytest.raises(ValueError):
        debug_lm_config(dim=30, num_heads=4)
