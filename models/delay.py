"""MusicGen's codebook delay pattern: codebook k is shifted right by k steps.

Worked example, K = 3 codebooks, T = 4 frames, ``_`` = the special token (id V):

    codes [K, T]          delayed [K, T + K - 1]
    a0 a1 a2 a3           a0 a1 a2 a3 _  _
    b0 b1 b2 b3     ->    _  b0 b1 b2 b3 _
    c0 c1 c2 c3           _  _  c0 c1 c2 c3

The LM reads ``[start, delayed[:, :-1]]`` (start = the special token in every codebook) and predicts
``delayed``: at step s it emits codebook 0 of frame s, codebook 1 of frame s - 1, and so on, so the
coarse codebook of a frame is always known before its finer ones. This is exactly the layout of
transformers' ``MusicgenForCausalLM.build_delay_pattern_mask`` (where the special token is its pad
token, id = vocab_size).
"""

from __future__ import annotations

import torch


def delay_valid_mask(num_codebooks: int, num_steps: int, device: torch.device | None = None) -> torch.Tensor:
    """Which delayed positions hold a real code.

    Returns:
        valid [K, S] bool, S = num_steps = T + K - 1: True where ``k <= s < k + T``.
    """
    frames = num_steps - num_codebooks + 1
    if frames < 1:
        raise ValueError(f"{num_steps} delayed steps hold no frame for {num_codebooks} codebooks")
    s = torch.arange(num_steps, device=device)[None, :]
    k = torch.arange(num_codebooks, device=device)[:, None]
    return (s >= k) & (s < k + frames)


def build_delayed(codes: torch.Tensor, special: int) -> torch.Tensor:
    """Shift codebook k right by k steps, filling the gaps with ``special``.

    Args:
        codes: [B, K, T] integer codes.
        special: the id written where no code exists (the LM's start/pad token, = V).
    Returns:
        delayed [B, K, T + K - 1].
    """
    if codes.dim() != 3:
        raise ValueError(f"codes must be [B, K, T], got {tuple(codes.shape)}")
    b, k, t = codes.shape
    out = codes.new_full((b, k, t + k - 1), special)
    for i in range(k):
        out[:, i, i : i + t] = codes[:, i]
    return out


def revert_delayed(delayed: torch.Tensor) -> torch.Tensor:
    """Undo ``build_delayed``.

    Args:
        delayed: [B, K, S] with S >= K.
    Returns:
        codes [B, K, S - K + 1].
    """
    if delayed.dim() != 3:
        raise ValueError(f"delayed must be [B, K, S], got {tuple(delayed.shape)}")
    _, k, s = delayed.shape
    t = s - k + 1
    if t < 1:
        raise ValueError(f"{s} delayed steps hold no frame for {k} codebooks")
    return torch.stack([delayed[:, i, i : i + t] for i in range(k)], dim=1)


def lm_inputs(delayed: torch.Tensor, special: int) -> torch.Tensor:
    """Teacher-forcing inputs: ``[start, delayed[:, :, :-1]]``.

    Args:
        delayed: [B, K, S].
    Returns:
        inputs [B, K, S], inputs[..., 0] = special.
    """
    start = delayed.new_full(delayed.shape[:2] + (1,), special)
    return torch.cat([start, delayed[..., :-1]], dim=-1)
