"""The audio-token language model with MusicGen's architecture, and its KV cache.

Per step the input is K codes (one per codebook, delay pattern applied); their K embeddings are
summed, sinusoidal positions added, then pre-norm decoder layers (causal self-attention,
cross-attention to the text states, GELU MLP; no biases), a final LayerNorm and K output heads.
Weight-for-weight compatible with transformers' ``MusicgenForCausalLM`` (see ``models.hf_musicgen``),
except that q/k/v of self-attention are stored fused and k/v of cross-attention too (same numbers,
fewer kernel launches per decoding step).

The null condition (classifier-free guidance, condition dropout) is "no text": the cross-attention
branch contributes exactly zero, as in MusicGen where zeroed text states meet bias-free k/v
projections. Decoding exploits it: null rows sit after the conditioned rows and skip cross-attention.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from models.fused_step import DecodeCache, StepBuffers, fused_step


@dataclass
class LMConfig:
    """Sizes of the audio LM. ``cardinality`` is V, the codes per codebook; the embedding tables have
    V + 1 rows, row V being the special start/pad token of the delay pattern."""

    num_codebooks: int = 4
    cardinality: int = 2048
    dim: int = 1024
    num_layers: int = 24
    num_heads: int = 16
    ffn_dim: int = 4096
    cond_dim: int = 768
    max_positions: int = 2048
    dropout: float = 0.0
    scale_embedding: bool = False
    layer_norm_eps: float = 1e-5

    def __post_init__(self) -> None:
        if self.dim % self.num_heads:
            raise ValueError(f"dim {self.dim} is not divisible by num_heads {self.num_heads}")

    @property
    def special_token(self) -> int:
        return self.cardinality

    def to_dict(self) -> dict:
        return asdict(self)


def sinusoidal_positions(num_positions: int, dim: int) -> torch.Tensor:
    """MusicGen's (tensor2tensor) table: [cos | sin] halves, frequencies 10000^(-i / (dim/2 - 1)).

    Returns:
        [num_positions, dim] float32.
    """
    half = dim // 2
    freq = torch.exp(torch.arange(half, dtype=torch.float32) * -(math.log(10000) / (half - 1)))
    angles = torch.arange(num_positions, dtype=torch.float32)[:, None] * freq[None, :]
    table = torch.cat([torch.cos(angles), torch.sin(angles)], dim=1)
    if dim % 2:
        table = F.pad(table, (0, 1))
    return table


@dataclass
class TextStates:
    """Text conditioning as the LM sees it: states [B, L, C] and mask [B, L] (True = real token).

    A row whose mask is all False is the null condition."""

    states: torch.Tensor
    mask: torch.Tensor

    def __post_init__(self) -> None:
        if self.states.dim() != 3 or self.mask.shape != self.states.shape[:2]:
            raise ValueError(f"text states {tuple(self.states.shape)} / mask {tuple(self.mask.shape)} mismatch")

    def null(self) -> TextStates:
        """The same rows as the null condition (every mask False): CFG's unconditional branch."""
        return TextStates(self.states, torch.zeros_like(self.mask))

    def repeat_rows(self, g: int) -> TextStates:
        """Each row g times in a row: [B, ...] -> [B * g, ...] (prompt-major, as generations are laid out)."""
        return self if g == 1 else TextStates(self.states.repeat_interleave(g, 0), self.mask.repeat_interleave(g, 0))


class SelfAttention(nn.Module):
    def __init__(self, dim: int, num_heads: int, dropout: float):
        super().__init__()
        self.num_heads, self.head_dim, self.dropout = num_heads, dim // num_heads, dropout
        self.qkv = nn.Linear(dim, 3 * dim, bias=False)
        self.out = nn.Linear(dim, dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Causal attention over the whole sequence. x [B, S, D] -> [B, S, D]."""
        b, s, _ = x.shape
        q, k, v = self.qkv(x).view(b, s, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        p = self.dropout if self.training else 0.0
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True, dropout_p=p)
        return self.out(y.transpose(1, 2).reshape(b, s, -1))

    def step(self, x: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor, pos: int) -> torch.Tensor:
        """One decoding step. x [B, 1, D]; caches [B, H, S_max, hd] updated in place at ``pos``."""
        b = x.shape[0]
        q, k, v = self.qkv(x).view(b, 3, self.num_heads, 1, self.head_dim).unbind(1)
        k_cache[:, :, pos : pos + 1] = k
        v_cache[:, :, pos : pos + 1] = v
        y = F.scaled_dot_product_attention(q, k_cache[:, :, : pos + 1], v_cache[:, :, : pos + 1])
        return self.out(y.reshape(b, 1, -1))


class CrossAttention(nn.Module):
    def __init__(self, dim: int, num_heads: int, dropout: float):
        super().__init__()
        self.num_heads, self.head_dim, self.dropout = num_heads, dim // num_heads, dropout
        self.q = nn.Linear(dim, dim, bias=False)
        self.kv = nn.Linear(dim, 2 * dim, bias=False)
        self.out = nn.Linear(dim, dim, bias=False)

    def keys_values(self, states: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """states [B, L, D] -> k, v [B, H, L, hd] (computed once per generation and cached)."""
        b, n, _ = states.shape
        k, v = self.kv(states).view(b, n, 2, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        return k, v

    def attend(self, x: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """x [B, S, D]; k, v [B, H, L, hd]; mask [B, 1, 1, L] bool -> [B, S, D]."""
        b, s, _ = x.shape
        q = self.q(x).view(b, s, self.num_heads, self.head_dim).transpose(1, 2)
        p = self.dropout if self.training else 0.0
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=p)
        return self.out(y.transpose(1, 2).reshape(b, s, -1))


class DecoderLayer(nn.Module):
    """Pre-norm: x + SelfAttn(LN x); x + CrossAttn(LN x, text); x + MLP(LN x)."""

    def __init__(self, cfg: LMConfig):
        super().__init__()
        eps = cfg.layer_norm_eps
        self.self_norm = nn.LayerNorm(cfg.dim, eps=eps)
        self.self_attn = SelfAttention(cfg.dim, cfg.num_heads, cfg.dropout)
        self.cross_norm = nn.LayerNorm(cfg.dim, eps=eps)
        self.cross_attn = CrossAttention(cfg.dim, cfg.num_heads, cfg.dropout)
        self.mlp_norm = nn.LayerNorm(cfg.dim, eps=eps)
        self.fc1 = nn.Linear(cfg.dim, cfg.ffn_dim, bias=False)
        self.fc2 = nn.Linear(cfg.ffn_dim, cfg.dim, bias=False)
        self.dropout = nn.Dropout(cfg.dropout)

    def mlp(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.fc2(self.dropout(F.gelu(self.fc1(self.mlp_norm(x))))))


def _call_weight(linear: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """A float nn.Linear without bias, called functionally (no module-call overhead in the decoding step)."""
    return F.linear(x, linear.weight)


def _call_module(linear: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """A quantized Linear (``models.quantize``): only its own forward knows its int8 weights."""
    return linear(x)


class AudioLM(nn.Module):
    """MusicGen decoder: tokens [B, K, S] + text -> logits [B, K, S, V]."""

    def __init__(self, cfg: LMConfig):
        super().__init__()
        self.cfg = cfg
        # The K codebook tables (V + 1 rows each) and the K output heads are stored stacked, so a step
        # costs one gather and one matmul instead of K of each; row k * (V + 1) + c is code c of codebook k.
        self.embeddings = nn.Embedding(cfg.num_codebooks * (cfg.cardinality + 1), cfg.dim)
        offsets = torch.arange(cfg.num_codebooks) * (cfg.cardinality + 1)
        self.register_buffer("code_offsets", offsets[:, None], persistent=False)
        self.register_buffer("positions", sinusoidal_positions(cfg.max_positions, cfg.dim), persistent=False)
        self.cond_proj = nn.Linear(cfg.cond_dim, cfg.dim) if cfg.cond_dim != cfg.dim else nn.Identity()
        self.layers = nn.ModuleList(DecoderLayer(cfg) for _ in range(cfg.num_layers))
        self.final_norm = nn.LayerNorm(cfg.dim, eps=cfg.layer_norm_eps)
        self.heads = nn.Linear(cfg.dim, cfg.num_codebooks * cfg.cardinality, bias=False)
        self.embed_scale = math.sqrt(cfg.dim) if cfg.scale_embedding else 1.0
        self.dropout = nn.Dropout(cfg.dropout)
        self.quantized = ""  # "int8": the layers' and heads' Linears are int8 modules (models.quantize)
        # Decode with models.fused_step (float weights only); False = the plain step, the fallback and reference.
        self.fused = True

    @property
    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def _embed(self, tokens: torch.Tensor, start: int) -> torch.Tensor:
        """tokens [B, K, S] -> [B, S, D] (sum of codebook embeddings + positions start..start+S-1)."""
        x = self.embeddings(tokens + self.code_offsets).sum(dim=1)
        if self.embed_scale != 1.0:
            x = x * self.embed_scale
        return x + self.positions[start : start + tokens.shape[-1]]

    def _logits(self, x: torch.Tensor) -> torch.Tensor:
        """x [B, S, D] -> [B, K, S, V]."""
        b, s, _ = x.shape
        logits = self.heads(self.final_norm(x)).view(b, s, self.cfg.num_codebooks, self.cfg.cardinality)
        return logits.transpose(1, 2)

    def project_text(self, text: TextStates) -> tuple[torch.Tensor, torch.Tensor]:
        """Project text states to the model width and zero the padding (as MusicGen does).

        Returns states [B, L, D] and the attention mask [B, 1, 1, L]; null rows (no real token) attend
        uniformly over zero states, so their cross-attention output is exactly zero.
        """
        states = self.cond_proj(text.states.to(self.positions.dtype)) * text.mask[..., None]
        mask = text.mask.bool()
        mask = mask | ~mask.any(dim=1, keepdim=True)
        return states, mask[:, None, None, :]

    def forward(self, tokens: torch.Tensor, text: TextStates) -> torch.Tensor:
        """Teacher-forced logits.

        Args:
            tokens: [B, K, S] LM inputs (``models.delay.lm_inputs`` of the delayed codes).
            text: states [B, L, C], mask [B, L]; null rows have an all-False mask.
        Returns:
            logits [B, K, S, V]; position s predicts the delayed codes at step s.
        """
        return self._logits(self.hidden_states(tokens, text))

    def hidden_states(self, tokens: torch.Tensor, text: TextStates) -> torch.Tensor:
        """The decoder's last hidden states [B, S, D] (before the final norm) for the same inputs as
        ``forward``: what a reward model or a value head built on the LM reads."""
        b, k, s = tokens.shape
        if k != self.cfg.num_codebooks or text.states.shape[0] != b:
            raise ValueError(f"tokens {tuple(tokens.shape)} / text batch {text.states.shape[0]} do not fit the LM")
        if s > self.cfg.max_positions:
            raise ValueError(f"sequence of {s} steps exceeds max_positions {self.cfg.max_positions}")
        states, mask = self.project_text(text)
        x = self.dropout(self._embed(tokens, 0))
        for layer in self.layers:
            x = x + layer.dropout(layer.self_attn(layer.self_norm(x)))
            ck, cv = layer.cross_attn.keys_values(states)
            x = x + layer.dropout(layer.cross_attn.attend(layer.cross_norm(x), ck, cv, mask))
            x = x + layer.mlp(x)
        return x

    @torch.no_grad()
    def start_decoding(self, text: TextStates | None, batch: int, max_steps: int) -> DecodeCache:
        """Allocate the KV cache for ``batch`` rows: the first ``text`` rows conditioned, the rest null.

        Args:
            text: states [Bc, L, C] for the Bc <= batch conditioned rows, or None (all null).
            max_steps: the number of decoding steps that will follow.
        """
        cfg, dtype, dev = self.cfg, self.positions.dtype, self.positions.device
        if max_steps > cfg.max_positions:
            raise ValueError(f"{max_steps} steps exceed max_positions {cfg.max_positions}")
        shape = (batch, cfg.num_heads, max_steps, cfg.dim // cfg.num_heads)
        self_k = [torch.zeros(shape, dtype=dtype, device=dev) for _ in self.layers]
        self_v = [torch.zeros(shape, dtype=dtype, device=dev) for _ in self.layers]
        cross_k, cross_v, mask, num_cond = [], [], None, 0
        if text is not None:
            num_cond = text.states.shape[0]
            states, mask = self.project_text(text)
            for layer in self.layers:
                k, v = layer.cross_attn.keys_values(states)
                cross_k.append(k.contiguous())
                cross_v.append(v.contiguous())
        buffers = (StepBuffers.allocate(cfg.dim, cfg.ffn_dim, cfg.num_codebooks * cfg.cardinality, batch, num_cond,
                                        dtype, dev) if self.fused and not self.quantized else None)
        return DecodeCache(self_k, self_v, cross_k, cross_v, mask, num_cond, buffers)

    @torch.no_grad()
    def prefill(self, tokens: torch.Tensor, cache: DecodeCache) -> None:
        """Positions 0..P-1 in one pass, filling the cache as P calls of :meth:`step` would (no logits:
        continuation forces every code of those steps). Null rows (after ``cache.num_cond``) skip
        cross-attention, as in ``step``.

        Args:
            tokens: [B, K, P] inputs at positions 0..P-1 (``models.delay.lm_inputs`` of the forced steps).
        """
        cfg = self.cfg
        b, _, p = tokens.shape
        if p > cache.self_k[0].shape[2]:
            raise ValueError(f"{p} prefill steps exceed the cache's {cache.self_k[0].shape[2]}")
        heads, hd, n = cfg.num_heads, cfg.dim // cfg.num_heads, cache.num_cond
        x = self._embed(tokens, 0)
        for i, layer in enumerate(self.layers):
            q, k, v = layer.self_attn.qkv(layer.self_norm(x)).view(b, p, 3, heads, hd).permute(2, 0, 3, 1, 4)
            cache.self_k[i][:, :, :p] = k
            cache.self_v[i][:, :, :p] = v
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
            x = x + layer.self_attn.out(y.transpose(1, 2).reshape(b, p, -1))
            if n:
                h = layer.cross_norm(x[:n])
                x = torch.cat([x[:n] + layer.cross_attn.attend(h, cache.cross_k[i], cache.cross_v[i],
                                                               cache.cross_mask), x[n:]])
            x = x + layer.mlp(x)

    @torch.no_grad()
    def step(self, tokens: torch.Tensor, pos: int, cache: DecodeCache) -> torch.Tensor:
        """One decoding step: :func:`models.fused_step.fused_step` when the cache has its buffers (float
        weights and ``self.fused``), else the plain step below.

        The plain step is written with functional calls on the same weights as ``forward`` (no module
        hooks, no dropout): at batch 1 a step is dominated by per-op overhead, not arithmetic.

        Args:
            tokens: [B, K] inputs at position ``pos``.
        Returns:
            logits [B, K, V] for position ``pos``.
        """
        if self.fused and not self.quantized and cache.buffers is not None:
            return fused_step(self, tokens, pos, cache)
        cfg = self.cfg
        lin = _call_module if self.quantized else _call_weight  # int8 modules hold no float weight
        b, n = tokens.shape[0], cache.num_cond
        heads, hd, dim, eps = cfg.num_heads, cfg.dim // cfg.num_heads, (cfg.dim,), cfg.layer_norm_eps
        x = F.embedding(tokens + self.code_offsets[:, 0], self.embeddings.weight).sum(dim=1)
        if self.embed_scale != 1.0:
            x = x * self.embed_scale
        x = x + self.positions[pos]  # [B, D]: 2-D activations (3-D inputs take a slower matmul path at batch 1)
        for i, layer in enumerate(self.layers):
            h = F.layer_norm(x, dim, layer.self_norm.weight, layer.self_norm.bias, eps)
            q, k, v = lin(layer.self_attn.qkv, h).view(b, 3, heads, 1, hd).unbind(1)
            cache.self_k[i][:, :, pos : pos + 1] = k
            cache.self_v[i][:, :, pos : pos + 1] = v
            y = F.scaled_dot_product_attention(q, cache.self_k[i][:, :, : pos + 1], cache.self_v[i][:, :, : pos + 1])
            x = x + lin(layer.self_attn.out, y.reshape(b, -1))
            if n:
                ca = layer.cross_attn
                h = F.layer_norm(x[:n], dim, layer.cross_norm.weight, layer.cross_norm.bias, eps)
                q = lin(ca.q, h).view(n, heads, 1, hd)
                y = F.scaled_dot_product_attention(q, cache.cross_k[i], cache.cross_v[i], attn_mask=cache.cross_mask)
                x[:n] += lin(ca.out, y.reshape(n, -1))
            h = F.layer_norm(x, dim, layer.mlp_norm.weight, layer.mlp_norm.bias, eps)
            x = x + lin(layer.fc2, F.gelu(lin(layer.fc1, h)))
        x = F.layer_norm(x, dim, self.final_norm.weight, self.final_norm.bias, eps)
        return lin(self.heads, x).view(b, cfg.num_codebooks, cfg.cardinality)
