"""The fused decoding step (models/fused_step.py) against the plain step it replaces: same logits within 1e-5,
same KV cache, same greedy codes, with and without CFG, at batch 1 and 8; and the fallback when it is off."""

from __future__ import annotations

import pytest
import torch

import models.lm as lm_module
from models.debug import debug_generator, debug_lm_config, seeded_lm
from models.lm import AudioLM, TextStates
from models.sampling import SamplingParams


def _text(n: int, length: int = 5, dim: int = 16, seed: int = 0) -> TextStates:
    g = torch.Generator().manual_seed(seed)
    mask = torch.ones(n, length, dtype=torch.bool)
    mask[0, 3:] = False  # one padded prompt
    return TextStates(torch.randn(n, length, dim, generator=g), mask)


def _decode(lm: AudioLM, fused: bool, text: TextStates, rows: int, tokens: torch.Tensor, prefill: int = 0):
    """Teacher-forced decoding of tokens [rows, K, S] (the first ``prefill`` positions in one prefill pass).

    Returns logits [rows, K, S - prefill, V] and the cache."""
    lm.fused = fused
    try:
        steps = tokens.shape[-1]
        cache = lm.start_decoding(text, rows, steps)
        assert (cache.buffers is not None) == fused
        if prefill:
            lm.prefill(tokens[:, :, :prefill], cache)
        logits = torch.stack([lm.step(tokens[:, :, s], s, cache) for s in range(prefill, steps)], dim=2)
    finally:
        lm.fused = True
    return logits, cache


@pytest.mark.parametrize("batch", [1, 8])
@pytest.mark.parametrize("cfg", [False, True])
def test_fused_step_equals_the_plain_step(batch, cfg):
    """Logits within 1e-5 and the same KV cache for 12 positions; with CFG the null rows follow the conditioned
    ones (2 * batch rows, only the first half cross-attends)."""
    lm = seeded_lm(debug_lm_config(dim=64, num_heads=4, ffn_dim=128))
    rows = 2 * batch if cfg else batch
    g = torch.Generator().manual_seed(1)
    tokens = torch.randint(0, lm.cfg.cardinality + 1, (rows, lm.cfg.num_codebooks, 12), generator=g)
    text = _text(batch)
    plain, plain_cache = _decode(lm, False, text, rows, tokens)
    fused, fused_cache = _decode(lm, True, text, rows, tokens)
    assert fused.shape == plain.shape == (rows, lm.cfg.num_codebooks, 12, lm.cfg.cardinality)
    torch.testing.assert_close(fused, plain, rtol=0, atol=1e-5)
    for a, b in zip(fused_cache.self_k + fused_cache.self_v, plain_cache.self_k + plain_cache.self_v, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-5)


def test_fused_step_continues_a_prefilled_cache():
    """prefill fills the cache the fused step reads: prefill + fused steps = prefill + plain steps."""
    lm = seeded_lm(debug_lm_config())
    g = torch.Generator().manual_seed(2)
    tokens = torch.randint(0, lm.cfg.cardinality, (4, lm.cfg.num_codebooks, 10), generator=g)
    plain, _ = _decode(lm, False, _text(2), 4, tokens, prefill=6)
    fused, _ = _decode(lm, True, _text(2), 4, tokens, prefill=6)
    torch.testing.assert_close(fused, plain, rtol=0, atol=1e-5)


@pytest.mark.parametrize("batch", [1, 8])
@pytest.mark.parametrize("cfg", [1.0, 3.0])
def test_greedy_codes_are_identical(batch, cfg):
    """Through MusicGenerator and the one sampling loop: greedy codes with the fused step = with the plain one."""
    gen = debug_generator(seed=0)
    prompts = ["calm ambient piano", "fast techno with drums"] * 4
    params = SamplingParams(cfg=cfg, greedy=True)
    codes = {}
    for fused in (False, True):
        gen.lm.fused = fused
        codes[fused] = gen.generate_codes(prompts[:batch], 0.3, params, seeds=0).codes
    gen.lm.fused = True
    assert torch.equal(codes[True], codes[False])


def test_fallback_with_the_fused_step_disabled(monkeypatch):
    """lm.fused = False: the cache has no step buffers and the fused step is never called (the plain step runs and
    samples as before); a cache made with buffers also falls back once fusion is switched off."""
    def refuse(*args, **kwargs):
        raise AssertionError("the fused step ran although it is disabled")

    gen = debug_generator(seed=0)
    expected = gen.generate_codes(["jazz"], 0.2, SamplingParams(cfg=3.0), seeds=5).codes
    monkeypatch.setattr(lm_module, "fused_step", refuse)
    gen.lm.fused = False
    try:
        assert gen.lm.start_decoding(_text(1), 2, 4).buffers is None
        got = gen.generate_codes(["jazz"], 0.2, SamplingParams(cfg=3.0), seeds=5).codes
        gen.lm.fused = True
        cache = gen.lm.start_decoding(_text(1), 2, 4)
        gen.lm.fused = False
        gen.lm.step(torch.zeros(2, gen.lm.cfg.num_codebooks, dtype=torch.long), 0, cache)
    finally:
        gen.lm.fused = True
    assert got.shape == expected.shape


def test_fused_step_rejects_rows_the_buffers_were_not_made_for():
    lm = seeded_lm(debug_lm_config())
    cache = lm.start_decoding(_text(1), 2, 4)
    with pytest.raises(ValueError, match="rows"):
        lm.step(torch.zeros(3, lm.cfg.num_codebooks, dtype=torch.long), 0, cache)
