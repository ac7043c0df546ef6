"""Figures people would rather look at than read (matplotlib's object API on Agg, no pyplot state)."""

from __future__ import annotations

from pathlib import Path

import torch

from models.audio_features import log_mel, mel_filterbank, stft_magnitude


def _figure(width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(fig)
    return fig


def mel_image(wav: torch.Tensor, sample_rate: int, n_mels: int = 80) -> torch.Tensor:
    """[S] -> log-mel image [n_mels, T] for display."""
    fb = mel_filterbank(sample_rate, 1024, n_mels)
    return log_mel(stft_magnitude(wav[None].float(), 1024, 256), fb)[0]


def plot_spectrogram_pairs(
    pairs: list[tuple[str, torch.Tensor, torch.Tensor]],
    sample_rate: int,
    path: str | Path,
    labels: tuple[str, str] = ("original", "reconstruction"),
) -> Path:
    """One row per (title, a, b): log-mel spectrograms side by side."""
    fig = _figure(10, 2.6 * len(pairs))
    for i, (title, a, b) in enumerate(pairs):
        for j, (wav, label) in enumerate(((a, labels[0]), (b, labels[1]))):
            ax = fig.add_subplot(len(pairs), 2, 2 * i + j + 1)
            img = mel_image(wav, sample_rate).numpy()
            ax.imshow(
                img,
                origin="lower",
                aspect="auto",
                cmap="magma",
                extent=(0, wav.shape[-1] / sample_rate, 0, img.shape[0]),
            )
            ax.set_title(f"{title} — {label}", fontsize=9)
            ax.set_xlabel("seconds", fontsize=8)
            ax.set_ylabel("mel bin", fontsize=8)
            ax.tick_params(labelsize=7)
    fig.tight_layout()
    fig.savefig(path)
    return Path(path)


def moving_average(values: list[float], window: int) -> list[float]:
    """Trailing mean over up to ``window`` points: [1, 2, 3, 4] with window 2 -> [1, 1.5, 2.5, 3.5]."""
    out, total = [], 0.0
    for i, v in enumerate(values):
        total += v
        if i >= window:
            total -= values[i - window]
        out.append(total / min(i + 1, window))
    return out


def plot_training_logs(
    runs: dict[str, list[dict]], keys: list[str], path: str | Path, smooth: int = 1, x: str = "step"
) -> Path:
    """One panel per key: each run's logged value against its step (raw, faint; smoothed, solid), or against
    another logged field ``x`` (e.g. reward against KL: the points joined in step order, marked).

    runs: label -> JSONL records with ``x`` and the keys (records lacking either are skipped)."""
    fig = _figure(4.2 * len(keys), 3.4)
    for col, key in enumerate(keys):
        ax = fig.add_subplot(1, len(keys), col + 1)
        for i, (label, records) in enumerate(runs.items()):
            pts = [(r[x], r[key]) for r in records if key in r and x in r]
            if not pts:
                continue
            steps, vals = zip(*pts, strict=True)
            color = f"C{i % 10}"  # a run keeps its colour in every panel
            marker = None if x == "step" else "o"
            line = ax.plot(steps, vals, color=color, alpha=0.25 if smooth > 1 else 1.0, lw=0.8, marker=marker)[0]
            if smooth > 1:
                ax.plot(steps, moving_average(list(vals), smooth), color=color, label=label)
            else:
                line.set_label(label)
        ax.set_title(key + (f" (moving mean of {smooth})" if smooth > 1 else ""), fontsize=9)
        ax.set_xlabel(x)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path)
    return Path(path)
