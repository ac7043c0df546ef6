"""How good the scorer models are: text->audio retrieval (the embedder) and ROC AUC (the quality model).

Pure functions of scores and embeddings; the recipes report them on held-out splits.
"""

from __future__ import annotations

import math

import numpy as np
import torch


def roc_auc(pos: np.ndarray, neg: np.ndarray) -> float:
    """P(score of a random positive > score of a random negative), ties counted ½ (Mann–Whitney)."""
    pos, neg = np.asarray(pos, np.float64)[:, None], np.asarray(neg, np.float64)[None, :]
    if pos.size == 0 or neg.size == 0:
        return float("nan")
    return float(((pos > neg).sum() + 0.5 * (pos == neg).sum()) / (pos.size * neg.size))


def retrieval_metrics(text: torch.Tensor, audio: torch.Tensor, records: list[dict], k: int = 10) -> dict:
    """Text->audio retrieval on N matched pairs (text_i describes audio_i), unit-norm [N, D] each.

    R@1, R@k (and audio->text) with chance min(k, N)/N; style hit@k = the top k clips retrieved for
    a caption include one of the caption's clip's style (chance: 1 - C(N-m, k)/C(N, k) for m clips
    of that style), style precision@k (chance m/N); both also over the captions that name the style."""
    n = len(records)
    k = min(k, n)
    sim = text.float() @ audio.float().t()
    diag = sim.diag()
    rank_t2a = (sim > diag[:, None]).sum(1)
    rank_a2t = (sim.t() > diag[:, None]).sum(1)
    styles = np.array([r["style"] for r in records])
    top = sim.topk(k, dim=1).indices.numpy()
    same = styles[top] == styles[:, None]  # [N, k]
    m = np.array([(styles == s).sum() for s in styles])
    chance_hit = 1 - np.array([math.comb(n - mi, k) / math.comb(n, k) for mi in m])
    named = np.array(["style" in r.get("mentioned", ["style"]) for r in records])
    off = ~torch.eye(n, dtype=torch.bool)
    out = {
        "N": n,
        "R@1": float((rank_t2a < 1).float().mean()),
        f"R@{k}": float((rank_t2a < k).float().mean()),
        "chance_R@1": 1 / n,
        f"chance_R@{k}": k / n,
        "audio_to_text_R@1": float((rank_a2t < 1).float().mean()),
        f"audio_to_text_R@{k}": float((rank_a2t < k).float().mean()),
        "median_rank": float(rank_t2a.float().median() + 1),
        f"style_hit@{k}": float(same.any(1).mean()),
        f"chance_style_hit@{k}": float(chance_hit.mean()),
        f"style_precision@{k}": float(same.mean()),
        f"chance_style_precision@{k}": float((m / n).mean()),
        "cos_matched": float(diag.mean()),
        "cos_unmatched": float(sim[off].mean()) if n > 1 else float("nan"),
    }
    if named.any():
        out[f"style_hit@{k}_style_named"] = float(same[named].any(1).mean())
        out[f"chance_style_hit@{k}_style_named"] = float(chance_hit[named].mean())
        out["style_named_queries"] = int(named.sum())
    return out
