"""Attribute judges: classifiers that say what a clip sounds like, used ONLY for evaluation.

    judges = Judges.load("runs/judges/model")
    judges.predict(wav)             # {"style": ["jazz", ...], "tempo_band": [...], ...}
    judges.accuracy(wav, records)   # {"style": 0.83, ...} against manifest-style records

One model: a log-mel + chroma conv trunk (``models.audio_tower.ConvTower`` architecture, its own
weights trained from scratch on the corpus labels; it shares no weights with any reward model)
and one linear head per attribute. Two cheap hand features join the trunk's pooled output:

- tempo: the autocorrelation of the onset envelope (spectral flux of the log-mel frames) read at
  ``tempo_bins`` lags spaced geometrically between 40 and 240 BPM (a beat-period histogram);
- mode/key: Pearson correlations of the clip's mean chroma with the 24 rotated Krumhansl–Kessler
  major and minor key profiles (the classic key-finding template).

Label vocabularies live in the config (the training recipe fills them from the corpus attribute
tables), so this module imports nothing from ``musicrl``. Labels are ``str(value)`` of the manifest
field (``drums``: "True"/"False").
Long clips: per-``segment_s`` log-probabilities are averaged before the argmax.

Shapes: wav [B, S]; features [B, C, T]; hand features [B, H].
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from evaluation.signal_judges import KK_MAJOR, KK_MINOR
from models.audio_tower import ConvTower, FrontendConfig, LogMelFrontend, TowerConfig, segment_batch
from models.module_io import config_from_dict, load_module, save_module

ATTRIBUTES: tuple[str, ...] = ("style", "tempo_band", "mode", "lead_instrument", "drums")


@dataclass
class AttributeJudgement:
    """What the judges hear in B clips: ``matches`` per clip {attribute: predicted == the stated label}
    (only the attributes stated for that clip); ``profiles`` [B, C] every attribute's label
    probabilities, concatenated in sorted attribute order (the space of ``attribute_diversity``)."""

    matches: list[dict[str, bool]]
    profiles: torch.Tensor


def label_of(record: dict, attr: str) -> str:
    """The ground-truth label of a manifest record as the judges spell it: ``str(value)`` (so drums
    is "True"/"False", as ``evaluation.suite`` compares ``str(attribute)``)."""
    return str(record[attr])


@dataclass
class JudgesConfig:
    frontend: FrontendConfig = field(default_factory=lambda: FrontendConfig(hop=160))  # 100 frames/s for onsets
    tower: TowerConfig = field(default_factory=lambda: TowerConfig(widths=[96, 144, 192], stem_stride=4, out=192))
    labels: dict[str, list[str]] = field(default_factory=dict)  # attribute -> vocabulary
    segment_s: float = 4.0
    hand_features: bool = True
    tempo_bins: int = 48
    min_bpm: float = 40.0
    max_bpm: float = 240.0
    hand_hidden: int = 64

    @property
    def hand_dim(self) -> int:
        return self.tempo_bins + 26 if self.hand_features else 0


def onset_autocorrelation(log_mel: torch.Tensor, fps: float, bpms: torch.Tensor) -> torch.Tensor:
    """Beat-period histogram: [B, M, T] log-mel -> [B, len(bpms)] normalised autocorrelation of the
    spectral-flux onset envelope at lag 60/bpm seconds (linear interpolation between frames). The
    envelope is smoothed (Gaussian, 25 ms) so that sharp peaks between two sampled lags survive."""
    flux = F.relu(log_mel[:, :, 1:] - log_mel[:, :, :-1]).mean(1)  # [B, T-1]
    sigma = 0.025 * fps
    r = max(1, int(3 * sigma))
    kernel = torch.exp(-0.5 * (torch.arange(-r, r + 1, device=flux.device, dtype=flux.dtype) / sigma) ** 2)
    flux = F.conv1d(flux[:, None], (kernel / kernel.sum())[None, None], padding=r)[:, 0]
    flux = flux - flux.mean(-1, keepdim=True)
    n = flux.shape[-1]
    spec = torch.fft.rfft(flux, n=2 * n)
    ac = torch.fft.irfft(spec.abs().pow(2), n=2 * n)[:, :n]
    ac = ac / ac[:, :1].clamp_min(1e-8)
    lags = (60.0 / bpms * fps).clamp(max=n - 2).to(log_mel.device)
    lo = lags.floor().long()
    frac = lags - lo
    return ac[:, lo] * (1 - frac) + ac[:, lo + 1] * frac


def key_profile_correlations(log_chroma: torch.Tensor) -> torch.Tensor:
    """[B, 12, T] log chroma (index 0 = A, as ``chroma_filterbank`` orders it) -> [B, 26]: the
    correlation with the 12 rotations of the major and of the minor profile, then the best major
    and the best minor correlation."""
    c = log_chroma.exp().mean(-1)  # [B, 12] mean energy per pitch class
    c = c - c.mean(-1, keepdim=True)
    c = c / c.norm(dim=-1, keepdim=True).clamp_min(1e-8)
    profiles = []
    for prof in (KK_MAJOR, KK_MINOR):
        p = torch.tensor(prof, device=c.device)
        p = (p - p.mean()) / (p - p.mean()).norm()
        profiles.append(torch.stack([p.roll(k) for k in range(12)]))  # tonic at pitch class k
    major, minor = (c @ p.t() for p in profiles)  # [B, 12] each
    return torch.cat([major, minor, major.max(-1, keepdim=True).values, minor.max(-1, keepdim=True).values], -1)


class Judges(nn.Module):
    """Multi-head attribute classifier over a shared log-mel trunk (evaluation only)."""

    def __init__(self, cfg: JudgesConfig):
        super().__init__()
        if not cfg.labels:
            raise ValueError("JudgesConfig.labels is empty: give each attribute its vocabulary")
        self.cfg = cfg
        self.frontend = LogMelFrontend(cfg.frontend)
        self.tower = ConvTower(cfg.frontend.channels, cfg.tower)
        width = cfg.tower.out
        if cfg.hand_features:
            self.hand = nn.Sequential(nn.LayerNorm(cfg.hand_dim), nn.Linear(cfg.hand_dim, cfg.hand_hidden), nn.GELU())
            width += cfg.hand_hidden
        self.heads = nn.ModuleDict({attr: nn.Linear(width, len(v)) for attr, v in cfg.labels.items()})
        bpms = torch.exp(torch.linspace(math.log(cfg.min_bpm), math.log(cfg.max_bpm), cfg.tempo_bins))
        self.register_buffer("bpms", bpms, persistent=False)

    @property
    def device(self) -> torch.device:
        return self.bpms.device

    @property
    def sample_rate(self) -> int:
        return self.cfg.frontend.sample_rate

    def hand_features(self, log_feats: torch.Tensor) -> torch.Tensor:
        """Raw (unnormalised) log features [B, C, T] -> [B, H] (tempo histogram + key correlations)."""
        fcfg = self.cfg.frontend
        tempo = onset_autocorrelation(log_feats[:, : fcfg.n_mels], fcfg.sample_rate / fcfg.hop, self.bpms)
        if not fcfg.chroma:
            raise ValueError("hand features need the chroma channels (frontend.chroma = true)")
        return torch.cat([tempo, key_profile_correlations(log_feats[:, fcfg.n_mels :])], -1)

    def forward(self, log_feats: torch.Tensor) -> dict[str, torch.Tensor]:
        """Raw log features [B, C, T] -> {attr: logits [B, n_labels]} (the training path)."""
        h = self.tower(self.frontend.normalise(log_feats))
        if self.cfg.hand_features:
            h = torch.cat([h, self.hand(self.hand_features(log_feats))], -1)
        return {attr: head(h) for attr, head in self.heads.items()}

    logits_from_log_features = forward

    @torch.no_grad()
    def log_probs(self, wav: torch.Tensor) -> dict[str, torch.Tensor]:
        """wav [B, S] -> {attr: [B, n_labels]}: segment log-probabilities averaged, renormalised."""
        windows, (b, n) = segment_batch(wav, self.cfg.segment_s, self.sample_rate, self.device)
        logits = self.logits_from_log_features(self.frontend.log_features(windows))
        return {a: torch.log_softmax(torch.log_softmax(x, -1).reshape(b, n, -1).mean(1), -1) for a, x in logits.items()}

    @torch.no_grad()
    def probabilities(self, wav: torch.Tensor, batch_size: int = 16) -> dict[str, torch.Tensor]:
        """wav [B, S] -> {attr: [B, n_labels]} label probabilities on the CPU, ``batch_size`` clips at a time."""
        parts = [self.log_probs(wav[i : i + batch_size]) for i in range(0, len(wav), batch_size)]
        return {a: torch.cat([lp[a] for lp in parts]).exp().cpu() for a in self.cfg.labels}

    def labels_of(self, probs: dict[str, torch.Tensor]) -> dict[str, list[str]]:
        """{attr: [B, n_labels]} -> {attr: B most probable labels}."""
        return {a: [self.cfg.labels[a][j] for j in p.argmax(-1).tolist()] for a, p in probs.items()}

    def judge(self, wav: torch.Tensor, stated: list[dict[str, str]], batch_size: int = 16) -> AttributeJudgement:
        """wav [B, S] and the attributes stated for each clip (B dicts, labels as ``label_of`` spells
        them) -> which of them the judges hear, and the clips' probability profiles."""
        if len(stated) != len(wav):
            raise ValueError(f"{len(stated)} attribute sets for {len(wav)} clips")
        probs = self.probabilities(wav, batch_size)
        predicted = self.labels_of(probs)
        matches = [{a: predicted[a][i] == str(v) for a, v in s.items() if a in predicted} for i, s in enumerate(stated)]
        return AttributeJudgement(matches, torch.cat([probs[a] for a in sorted(probs)], dim=-1))

    def predict(self, wav: torch.Tensor, batch_size: int = 16) -> dict[str, list[str]]:
        """wav [B, S] -> {attr: B predicted labels}."""
        return self.labels_of(self.probabilities(wav, batch_size))

    @torch.no_grad()
    def accuracy(self, wav: torch.Tensor, records: list[dict]) -> dict[str, float]:
        """Fraction of clips whose predicted label equals the record's, per attribute the records carry."""
        if len(records) != len(wav):
            raise ValueError(f"{len(records)} records for {len(wav)} clips")
        pred = self.predict(wav)
        return {
            attr: float(np.mean([p == label_of(r, attr) for p, r in zip(pred[attr], records, strict=True)]))
            for attr in self.cfg.labels
            if all(attr in r for r in records)
        }

    def save(self, path: str | Path, lineage: dict | None = None) -> Path:
        return save_module(self, path, "judges", self.cfg, lineage)

    @classmethod
    def load(cls, path: str | Path, device: str | torch.device = "cpu") -> Judges:
        header, state = load_module(path, "judges")
        model = cls(config_from_dict(JudgesConfig, header.config))
        model.load_state_dict(state)
        return model.to(device).eval()


def confusion_matrix(true: list[str], pred: list[str], labels: list[str]) -> np.ndarray:
    """[L, L] counts, rows = true label, columns = predicted (labels outside ``labels`` ignored)."""
    index = {name: i for i, name in enumerate(labels)}
    m = np.zeros((len(labels), len(labels)), dtype=np.int64)
    for t, p in zip(true, pred, strict=True):
        if t in index and p in index:
            m[index[t], index[p]] += 1
    return m


def plot_confusion(matrix: np.ndarray, labels: list[str], path: str | Path, title: str = "") -> Path:
    """A row-normalised confusion matrix as a PNG (counts written in the cells)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    size = 2.5 + 0.45 * len(labels)
    fig = Figure(figsize=(size, size), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    rows = matrix / np.maximum(matrix.sum(1, keepdims=True), 1)
    ax.imshow(rows, cmap="Blues", vmin=0, vmax=1)
    for i in range(len(labels)):
        for j in range(len(labels)):
            if matrix[i, j]:
                ax.text(
                    j,
                    i,
                    str(matrix[i, j]),
                    ha="center",
                    va="center",
                    fontsize=7,
                    color="white" if rows[i, j] > 0.5 else "black",
                )
    ax.set_xticks(range(len(labels)), labels, rotation=60, ha="right", fontsize=8)
    ax.set_yticks(range(len(labels)), labels, fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path)
    return Path(path)
