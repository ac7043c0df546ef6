"""The learned baseline of MusicRL's REINFORCE: V(s_t) for every delayed step of a sequence.

    value = ValueModel.from_lm(policy_lm)           # a copy of the LM's trunk + a scalar head (zero)
    v = value(rollout.inputs, rollout.text)         # [N, K, S]: one value per step, shared by the K codebooks

MusicRL initialises policy AND value from the pretrained LM (arXiv:2402.04229): the value trunk is a
copy of the LM's decoder (its own weights from then on), read through ``AudioLM.hidden_states``; the
head is a LayerNorm and a linear map to one number with zero weights; the ``rl`` recipe sets its bias
to the first batch's mean reward before the first update (a zero start would make every advantage the
raw reward, pushing up every sampled token at once). A delayed step s predicts the K codes of that step, so
V(s) is one number broadcast over the K codebooks (the layout ``kl_regularised_reinforce_loss`` takes).
"""

from __future__ import annotations

import copy

import torch
from torch import Tensor, nn

from models.lm import AudioLM, TextStates


class ValueModel(nn.Module):
    """V(s): trunk (an ``AudioLM`` copy) -> LayerNorm -> Linear(D, 1), per delayed step."""

    def __init__(self, trunk: AudioLM):
        super().__init__()
        self.trunk = trunk
        self.norm = nn.LayerNorm(trunk.cfg.dim, eps=trunk.cfg.layer_norm_eps)
        self.head = nn.Linear(trunk.cfg.dim, 1)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)
        # the LM's output heads and final norm are not read (the value has its own norm): no gradient, no
        # update, and nothing DDP would wait for
        self.trunk.heads.requires_grad_(False)
        self.trunk.final_norm.requires_grad_(False)

    @classmethod
    def from_lm(cls, lm: AudioLM) -> ValueModel:
        """A value model whose trunk starts as a copy of ``lm`` (with the final norm's weights)."""
        model = cls(copy.deepcopy(lm))
        model.norm.load_state_dict(lm.final_norm.state_dict())
        return model.to(next(lm.parameters()).device)

    def forward(self, inputs: Tensor, text: TextStates) -> Tensor:
        """inputs [N, K, S] (the LM's inputs), text [N, ...] -> values [N, K, S] (float32)."""
        h = self.trunk.hidden_states(inputs, text)  # [N, S, D]
        v = self.head(self.norm(h)).squeeze(-1).float()  # [N, S]
        return v[:, None, :].expand(-1, inputs.shape[1], -1)


@torch.no_grad()
def ema_update(target: nn.Module, source: nn.Module, rate: float) -> None:
    """θ_ema ← (1 − μ) θ_ema + μ θ for every floating parameter and buffer (WARP's anchor, μ = ``rate``)."""
    if not 0.0 < rate <= 1.0:
        raise ValueError(f"the EMA rate must lie in (0, 1], got {rate}")
    src = source.state_dict()
    for name, value in target.state_dict().items():
        if value.is_floating_point():
            value.lerp_(src[name].to(value.dtype), rate)
