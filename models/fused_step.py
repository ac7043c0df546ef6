"""The fused decoding step of :class:`models.lm.AudioLM` (issue 13, item 1), chosen by measurement.

``AudioLM.step`` runs :func:`fused_step` whenever the cache carries :class:`StepBuffers` (``start_decoding``
allocates them unless ``lm.fused = False`` or the model is int8). Same weights, same cache, same
sampling; logits differ from the plain step only in float rounding (a few 1e-6 on the embedded default).
What it changes, each measured on the embedded default on one CPU thread (docs/BENCHMARKS.md,
"A fused decoding step"; ``benchmarks/fused_step.py``):

- Every projection is ``torch.mm(W, x.t(), out=buffer)``: MKL multiplies the weight [out, in] by a
  few transposed rows with a kernel that streams the weight once, ~1.25-1.4x faster at 2-8 rows than
  ``F.linear``'s ``x @ W.t()`` (the GEMM path that made CFG's second row cost almost a second pass over the
  weights). The operand must be a transposed *contiguous* [rows, in] tensor: a contiguous [in, rows] one
  takes a path 2x slower, so the MLP's hidden state is copied to [rows, F] before ``fc2``.
- Projection outputs ([out, rows]) and the MLP's hidden state are preallocated once per generation and
  written in place, as is the residual stream; what remains allocated per step are the few small tensors
  of ops without an ``out=`` form (layer norms, attention) and the returned logits (fresh, so a caller
  may keep them across steps).
- Attention stays on ``F.scaled_dot_product_attention``: one-query attention as two batched matmuls
  (into preallocated score buffers or not) measured the same in situ; at 16 rows it is bound by reading
  the KV cache (126 MB per step at position 325), not by the kernel.

The plain step (``lm.fused = False``) remains the fallback and the reference the tests compare with.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass
class StepBuffers:
    """Preallocated per-generation outputs of the step's projections, stored transposed ([features, rows])
    because that is the layout ``torch.mm(W, x.t())`` writes. B rows, Bc conditioned rows."""

    qkv: torch.Tensor  # [3D, B]
    attn_out: torch.Tensor  # [D, B]
    cross_q: torch.Tensor  # [D, Bc]
    cross_out: torch.Tensor  # [D, Bc]
    fc1: torch.Tensor  # [F, B]
    hidden: torch.Tensor  # [B, F]: GELU(fc1) in the row layout fc2's fast kernel wants
    fc2: torch.Tensor  # [D, B]
    heads: torch.Tensor  # [K * V, B]

    @classmethod
    def allocate(cls, dim: int, ffn_dim: int, logits: int, rows: int, cond_rows: int, dtype: torch.dtype,
                 device: torch.device) -> StepBuffers:
        """Buffers for a model of width ``dim``, MLP width ``ffn_dim`` and ``logits`` = K * V outputs."""
        def empty(*shape: int) -> torch.Tensor:
            return torch.empty(shape, dtype=dtype, device=device)

        d, f = dim, ffn_dim
        return cls(empty(3 * d, rows), empty(d, rows), empty(d, cond_rows), empty(d, cond_rows), empty(f, rows),
                   empty(rows, f), empty(d, rows), empty(logits, rows))


@dataclass
class DecodeCache:
    """Everything one generation reuses across steps (made by ``models.lm.AudioLM.start_decoding``; defined here,
    beside the fused step that reads it, because ``models.lm`` imports this module).

    self_k, self_v: per layer [B, H, S_max, hd]; cross_k, cross_v: per layer [Bc, H, L, hd] for the
    Bc conditioned rows (rows Bc..B-1 are null rows and skip cross-attention); cross_mask [Bc, 1, 1, L];
    buffers: the fused step's preallocated outputs, None for the plain step.
    """

    self_k: list[torch.Tensor]
    self_v: list[torch.Tensor]
    cross_k: list[torch.Tensor]
    cross_v: list[torch.Tensor]
    cross_mask: torch.Tensor | None
    num_cond: int
    buffers: StepBuffers | None = None


def project(weight: torch.Tensor, x: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """x [R, in] (contiguous) times weight [out, in] transposed, written into ``out`` [out, R].

    Returns:
        [R, out]: a transposed view of ``out`` (valid until ``out`` is written again).
    """
    return torch.mm(weight, x.t(), out=out).t()


def _heads_first(t: torch.Tensor, heads: int) -> torch.Tensor:
    """[H * hd, R] (a projection's transposed output) -> [R, H, 1, hd], a view."""
    return t.view(heads, -1, t.shape[1]).permute(2, 0, 1).unsqueeze(2)


@torch.no_grad()
def fused_step(lm: nn.Module, tokens: torch.Tensor, pos: int, cache: DecodeCache) -> torch.Tensor:
    """One decoding step of ``lm`` (a ``models.lm.AudioLM`` with float weights) on ``cache.buffers``: the plain
    step's arithmetic with the faster projection kernel.

    Args:
        tokens: [B, K] inputs at position ``pos``; B must be the rows the cache was made for.
    Returns:
        logits [B, K, V] for position ``pos`` (a new contiguous tensor).
    """
    cfg, buf = lm.cfg, cache.buffers
    b, n = tokens.shape[0], cache.num_cond
    if buf is None or buf.qkv.shape[1] != b:
        raise ValueError(f"{b} rows do not fit the cache's step buffers")
    heads, dim, eps, length = cfg.num_heads, (cfg.dim,), cfg.layer_norm_eps, pos + 1
    x = F.embedding(tokens + lm.code_offsets[:, 0], lm.embeddings.weight).sum(dim=1)
    if lm.embed_scale != 1.0:
        x = x * lm.embed_scale
    x = x + lm.positions[pos]  # [B, D], the residual stream, updated in place below
    for i, layer in enumerate(lm.layers):
        h = F.layer_norm(x, dim, layer.self_norm.weight, layer.self_norm.bias, eps)
        q, k, v = torch.mm(layer.self_attn.qkv.weight, h.t(), out=buf.qkv).chunk(3)  # each [D, B]
        cache.self_k[i][:, :, pos : pos + 1] = _heads_first(k, heads)
        cache.self_v[i][:, :, pos : pos + 1] = _heads_first(v, heads)
        y = F.scaled_dot_product_attention(_heads_first(q, heads).contiguous(), cache.self_k[i][:, :, :length],
                                           cache.self_v[i][:, :, :length])
        x += project(layer.self_attn.out.weight, y.reshape(b, -1), buf.attn_out)
        if n:
            ca = layer.cross_attn
            h = F.layer_norm(x[:n], dim, layer.cross_norm.weight, layer.cross_norm.bias, eps)
            q = _heads_first(torch.mm(ca.q.weight, h.t(), out=buf.cross_q), heads).contiguous()
            y = F.scaled_dot_product_attention(q, cache.cross_k[i], cache.cross_v[i], attn_mask=cache.cross_mask)
            x[:n] += project(ca.out.weight, y.reshape(n, -1), buf.cross_out)
        h = F.layer_norm(x, dim, layer.mlp_norm.weight, layer.mlp_norm.bias, eps)
        g = torch.ops.aten.gelu_(torch.mm(layer.fc1.weight, h.t(), out=buf.fc1))
        x += project(layer.fc2.weight, buf.hidden.copy_(g.t()), buf.fc2)
    x = F.layer_norm(x, dim, lm.final_norm.weight, lm.final_norm.bias, eps)
    logits = project(lm.heads.weight, x, buf.heads).clone(memory_format=torch.contiguous_format)  # never the buffer
    return logits.view(b, cfg.num_codebooks, cfg.cardinality)
