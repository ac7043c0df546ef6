"""The preference reward model: r(caption, codes) -> scalar, trained on the arena's votes (MusicRL, arXiv:2402.04229;
WARM, arXiv:2401.12187).

    rm = RewardModel.from_generator(load_generator("default"), base="default")   # trunk = the pretrained LM
    r = rm.score(["calm ambient piano"], codes)                                  # codes [B, K, T] -> [B]
    reward = rewards.PreferenceReward(RewardModel.load("runs/rm/model"))         # a reward like the others

Architecture (MusicRL's user RM: "initialised from the pretrained LM; from scratch it stayed at chance"):
trunk = a copy of a generator's ``AudioLM`` (its output heads and final norm dropped: the RM reads the
decoder's hidden states, ``AudioLM.hidden_states``); the codes go in on the delay pattern as the LM
reads them (``lm_inputs(build_delayed(codes))``), the caption as the base generator's frozen text
states; the hidden states [B, S, D] are mean-pooled over the row's own delayed steps
(S_b = T_b + K − 1: shorter rows in a padded batch ignore their padding, which the causal attention
never lets reach earlier steps) -> LayerNorm -> Linear(D, 1). Shapes: B rows, K codebooks, T frames,
S = T + K − 1 delayed steps, D the LM width.

The text conditioner and codec are NOT part of the weights: they are the base generator's, named in
the header (a registry name such as "default"/"debug" or a checkpoint path) and loaded from there;
its content hash is recorded and checked on load (codes of another codec would be meaningless).

Directory layout (``save``/``load``, ``models.module_io`` format; never pickle)::

    reward_model.safetensors   trunk.* and head.* weights
    reward_model.json          {"format": "musicrl", "kind": "reward-model", "version": 2,
                                "config": {"lm": LMConfig, "base": "default", "base_hash": "..."},
                                "lineage": {"recipe": "reward-model", "prefs": [{"path", "sha256"}],
                                            "votes": {...counts...}, "warm": {...members...},
                                            "held_out": {...metrics...}, ...}}

WARM (Ramé et al. 2024): members fine-tuned from one shared init are merged by the uniform weight
average ``weight_average`` (one model's inference cost).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from models.delay import build_delayed, lm_inputs
from models.errors import InputError
from models.generator import MusicGenerator
from models.lm import AudioLM, LMConfig, TextStates
from models.merge import average
from models.module_io import config_from_dict, load_module, save_module

KIND = "reward-model"


@dataclass
class RewardModelConfig:
    """What rebuilds a reward model: the trunk's LM config and the base generator it reads text and
    codes of (``base``: registry name or checkpoint path; ``base_hash``: that generator's checkpoint hash)."""

    lm: LMConfig
    base: str = "default"
    base_hash: str = ""


class RewardModel(nn.Module):
    """r(x, y): caption x + audio codes y [B, K, T] -> [B] (implements ``rewards.PreferenceModel``)."""

    def __init__(self, cfg: RewardModelConfig, base: MusicGenerator | None = None):
        super().__init__()
        self.cfg = cfg
        self.trunk = AudioLM(cfg.lm)
        # the RM reads hidden states only: unused parameters would also break DDP's gradient bookkeeping
        self.trunk.heads = None
        self.trunk.final_norm = None
        self.head = nn.Sequential(nn.LayerNorm(cfg.lm.dim, eps=cfg.lm.layer_norm_eps), nn.Linear(cfg.lm.dim, 1))
        # the frozen base generator (conditioner + codec): shared, not a submodule, not in the weights
        self.__dict__["base"] = base
        self.lineage: dict = {}

    # -- building ---------------------------------------------------------------------------------

    @classmethod
    def from_generator(cls, gen: MusicGenerator, base: str) -> RewardModel:
        """A fresh RM whose trunk is a copy of ``gen.lm`` (the pretrained init) and whose head is new."""
        model = cls(RewardModelConfig(dataclasses.replace(gen.lm.cfg), str(base), gen.checkpoint_hash), gen)
        model.load_trunk(gen.lm)
        return model

    def load_trunk(self, lm: AudioLM) -> RewardModel:
        """Copy an LM's weights into the trunk (Baklava: another checkpoint of the same architecture)."""
        if lm.cfg != self.cfg.lm:
            raise InputError(f"LM config {lm.cfg} does not match the reward model's trunk {self.cfg.lm}")
        state = {k: v for k, v in lm.state_dict().items() if not k.startswith(("heads.", "final_norm."))}
        self.trunk.load_state_dict(state, strict=True)
        return self

    def set_dropout(self, p: float) -> RewardModel:
        """Set every dropout rate of the trunk (WARM diversifies members by dropout)."""
        for module in self.trunk.modules():
            if isinstance(module, nn.Dropout):
                module.p = p
            elif hasattr(module, "dropout") and isinstance(module.dropout, float):  # attention blocks
                module.dropout = p
        return self

    # -- scoring ----------------------------------------------------------------------------------

    def features(self, text: TextStates, codes: Tensor, frames: Tensor | None = None) -> Tensor:
        """Pooled trunk states [B, D]. codes [B, K, T] (rows may be right-padded), frames [B] = each
        row's real frame count T_b (None: all T)."""
        k, special = self.cfg.lm.num_codebooks, self.cfg.lm.special_token
        if codes.dim() != 3 or codes.shape[1] != k:
            raise ValueError(f"codes must be [B, {k}, T], got {tuple(codes.shape)}")
        b, _, t = codes.shape
        device = self.head[1].weight.device
        codes = codes.to(device).long()
        frames = torch.full((b,), t, device=device) if frames is None else frames.to(device)
        delayed = build_delayed(codes, special)  # [B, K, S]
        steps = torch.arange(delayed.shape[-1], device=device)[None]
        # a padded row reads the special id past its own end, exactly as the same row unpadded would
        past_end = (steps - torch.arange(k, device=device)[:, None])[None] >= frames[:, None, None]
        delayed = delayed.masked_fill(past_end, special)
        hidden = self.trunk.hidden_states(lm_inputs(delayed, special), _to(text, device))
        mask = (steps < (frames[:, None] + k - 1)).to(hidden.dtype)  # [B, S]
        return (hidden * mask[..., None]).sum(1) / mask.sum(1, keepdim=True).clamp_min(1.0)

    def forward(self, text: TextStates, codes: Tensor, frames: Tensor | None = None) -> Tensor:
        """Rewards [B] (what training differentiates; see ``features`` for the arguments)."""
        return self.head(self.features(text, codes, frames)).squeeze(-1)

    def encode_text(self, captions: list[str]) -> TextStates:
        """Captions -> the base generator's frozen text states."""
        if self.base is None:
            raise RuntimeError("this reward model has no base generator attached (build it with from_generator/load)")
        with torch.no_grad():
            return self.base.encode_text(list(captions))

    @torch.no_grad()
    def score(self, captions: list[str], codes: Tensor) -> Tensor:
        """r(caption, codes) for B captions and codes [B, K, T] of the base codec -> [B] float32 CPU."""
        if isinstance(captions, str) or len(captions) != codes.shape[0]:
            raise ValueError(f"need one caption per row of codes {tuple(codes.shape)}")
        if codes.numel() and (int(codes.min()) < 0 or int(codes.max()) >= self.cfg.lm.cardinality):
            raise ValueError(f"codes must lie in [0, {self.cfg.lm.cardinality}) (the base codec's codebook)")
        was_training = self.training
        self.eval()
        try:
            return self(self.encode_text(captions), codes).float().cpu()
        finally:
            self.train(was_training)

    # -- files ------------------------------------------------------------------------------------

    def save(self, path: str | Path, lineage: dict | None = None) -> Path:
        """``path/reward_model.safetensors`` + ``path/reward_model.json`` (module docstring)."""
        return save_module(self, path, KIND, self.cfg, lineage, stem="reward_model")

    @classmethod
    def load(cls, path: str | Path, base: MusicGenerator | None = None, device: str = "cpu") -> RewardModel:
        """Rebuild a saved RM with its base generator (loaded from the name/path its header gives, unless
        ``base`` is passed); any bad directory is one InputError line."""
        from models.registry import load_generator

        path = Path(path)
        if not path.is_dir():
            raise InputError(f"reward model {path} is not a directory")
        header, state = load_module(path, KIND, stem="reward_model")
        try:
            cfg = config_from_dict(RewardModelConfig, header.config)
            cfg.lm = cfg.lm if isinstance(cfg.lm, LMConfig) else LMConfig(**cfg.lm)
        except (TypeError, ValueError) as err:
            raise InputError(f"{path}/reward_model.json is malformed: {err}") from None
        base = base if base is not None else load_generator(cfg.base)
        if cfg.base_hash and base.checkpoint_hash != cfg.base_hash:
            raise InputError(
                f"{path} was trained on base {cfg.base!r} with hash {cfg.base_hash}; it now has hash "
                f"{base.checkpoint_hash} (its text states or codes may differ): retrain the reward model"
            )
        if (base.codec.num_codebooks, base.codec.cardinality) != (cfg.lm.num_codebooks, cfg.lm.cardinality):
            raise InputError(f"{path}: the base {cfg.base!r} codec does not fit the reward model's trunk")
        model = cls(cfg, base)
        try:
            model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in state.items()})
        except RuntimeError as err:
            lines = str(err).splitlines()
            raise InputError(f"{path}/reward_model.safetensors does not match its config: "
                             f"{(lines[1] if len(lines) > 1 else lines[0]).strip()}") from None
        model.lineage = header.lineage
        return model.to(device).eval()


def _to(text: TextStates, device: torch.device) -> TextStates:
    return TextStates(text.states.to(device), text.mask.to(device))


def weight_average(state_dicts: Sequence[Mapping[str, Tensor]]) -> dict[str, Tensor]:
    """WARM's merge: the uniform weight average (1/M) Σ_i θ_i of M members' state dicts (same keys and
    shapes; WARM, arXiv:2401.12187). ``models.merge.average`` with equal weights, which checks the inputs."""
    return average(list(state_dicts))
