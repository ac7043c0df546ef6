"""LoRA adapters on the audio LM, through the peft library (``inject_adapter_in_model`` on our own modules).

A rank-r adapter on a bias-free linear layer W [out, in] adds scaling * B @ A (A [r, in], B [out, r],
scaling = alpha / r; B starts at zero, so training starts from the base model). Our target names are
the LM's linear layers (``models.lm``): ``qkv`` and ``out`` of self-attention (q, k and v are one
fused projection, so one adapter covers the three), ``q``, ``kv`` and ``out`` of cross-attention,
``fc1`` and ``fc2`` of the MLP.

Injected adapters act in ``AudioLM.forward`` (teacher forcing: training and validation) but not in
``AudioLM.step``, which reads the base weights directly for speed: sample only from a merged model
(:func:`merged_state`), never from an injected one.

Adapter directory (what ``musicrl train lm`` writes to OUT/adapter and ``musicrl merge`` reads)::

    adapter_model.safetensors   the A and B matrices, peft's key names (layers.0.fc1.lora_A.weight, ...)
    adapter_config.json         peft's LoRA fields (r, lora_alpha, lora_dropout, target_modules, ...) and
                                "musicrl": {"base_model", "base_hash", "lm" (LMConfig), "lora", "step", ...}
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from models.audio_io import atomic_directory
from models.errors import InputError
from models.lm import AudioLM

ADAPTER_WEIGHTS, ADAPTER_CONFIG = "adapter_model.safetensors", "adapter_config.json"
LM_LINEAR_NAMES = ("qkv", "out", "q", "kv", "fc1", "fc2")


@dataclass
class LoraSettings:
    """rank 0 = no adapter (full finetuning); alpha / rank scales the adapter's output; dropout on the
    adapter's input; target_modules: names among ``LM_LINEAR_NAMES`` (every layer whose name ends so)."""

    rank: int = 0
    alpha: float = 16.0
    dropout: float = 0.05
    target_modules: list[str] = field(default_factory=lambda: list(LM_LINEAR_NAMES))

    def __post_init__(self) -> None:
        if self.rank < 0:
            raise ValueError(f"lora.rank must be >= 0 (0 = full finetuning), got {self.rank}")
        if not self.alpha > 0:
            raise ValueError(f"lora.alpha must be > 0, got {self.alpha}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"lora.dropout must be in [0, 1), got {self.dropout}")
        unknown = sorted(set(self.target_modules) - set(LM_LINEAR_NAMES))
        if unknown or not self.target_modules:
            raise ValueError(f"lora.target_modules must be a non-empty subset of {list(LM_LINEAR_NAMES)}, "
                             f"got {self.target_modules}")

    def peft_config(self):
        from peft import LoraConfig

        return LoraConfig(r=self.rank, lora_alpha=self.alpha, lora_dropout=self.dropout,
                          target_modules=list(self.target_modules), bias="none")


def apply_lora(lm: AudioLM, settings: LoraSettings) -> AudioLM:
    """Inject adapters into ``lm`` in place (peft): every base weight frozen, the adapters trainable."""
    from peft import inject_adapter_in_model

    if settings.rank < 1:
        raise ValueError("apply_lora needs lora.rank >= 1")
    return inject_adapter_in_model(settings.peft_config(), lm)


def lora_layers(lm: nn.Module) -> dict[str, nn.Module]:
    """{module name: peft LoRA layer} of an injected model."""
    from peft.tuners.lora import LoraLayer

    return {name: m for name, m in lm.named_modules() if isinstance(m, LoraLayer)}


def adapter_state(lm: nn.Module) -> dict[str, torch.Tensor]:
    """The adapter weights alone (peft's ``get_peft_model_state_dict``: keys without the adapter name)."""
    from peft import get_peft_model_state_dict

    return {k: v.detach().cpu().contiguous() for k, v in get_peft_model_state_dict(lm).items()}


def load_adapter_state(lm: nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Set an injected model's adapter weights (every adapter key must be present)."""
    from peft import set_peft_model_state_dict

    expected = set(adapter_state(lm))
    if set(state) != expected:
        missing = sorted(expected - set(state)) or sorted(set(state) - expected)
        raise InputError(f"adapter weights do not fit the model (first differing key: {missing[0]})")
    set_peft_model_state_dict(lm, state)


class AdapterWeights(nn.Module):
    """What the train state saves and restores for a LoRA run: the adapters only (the frozen base is
    reloaded from ``init``), so a resumable state stays small for a large base model."""

    def __init__(self, lm: nn.Module):
        super().__init__()
        self._lm = [lm]  # a list, so the LM is not registered as a child (its weights are not ours to save)

    def state_dict(self, *args, **kwargs) -> dict[str, torch.Tensor]:  # noqa: D102
        return adapter_state(self._lm[0])

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):  # noqa: D102
        load_adapter_state(self._lm[0], dict(state_dict))


def merged_state(lm: nn.Module, lam: float = 1.0) -> dict[str, torch.Tensor]:
    """The plain ``AudioLM`` state dict of base + lam * adapter: W + lam * scaling * B @ A per adapted
    layer (peft's ``get_delta_weight``), other weights as they are; the model itself is not changed."""
    layers = lora_layers(lm)
    state = {}
    for key, value in lm.state_dict().items():
        if ".lora_" in key:
            continue
        name, _, leaf = key.rpartition(".")
        if name.endswith(".base_layer"):
            owner = name[: -len(".base_layer")]
            key = f"{owner}.{leaf}"
            if leaf == "weight":
                with torch.no_grad():
                    value = value + lam * layers[owner].get_delta_weight("default").to(value.dtype)
        state[key] = value.detach().clone()
    return state


def save_adapter(lm: nn.Module, settings: LoraSettings, path: str | Path, base_name: str, base_hash: str,
                 extra: dict | None = None) -> Path:
    """OUT/adapter: the adapter weights and a config naming the base model and its checkpoint hash."""
    config = {
        "peft_type": "LORA",
        "r": settings.rank,
        "lora_alpha": settings.alpha,
        "lora_dropout": settings.dropout,
        "target_modules": list(settings.target_modules),
        "bias": "none",
        "base_model_name_or_path": base_name,
        "musicrl": {"base_model": base_name, "base_hash": base_hash, "lm": lm.cfg.to_dict(), "lora": asdict(settings),
                    **(extra or {})},
    }

    with atomic_directory(path) as tmp:
        save_file(adapter_state(lm), str(tmp / ADAPTER_WEIGHTS))
        (tmp / ADAPTER_CONFIG).write_text(json.dumps(config, indent=2))
    return Path(path)


def is_adapter_dir(path: str | Path) -> bool:
    return (Path(path) / ADAPTER_CONFIG).is_file()


@dataclass
class Adapter:
    """A loaded adapter directory: its settings, weights and the base it was trained on."""

    settings: LoraSettings
    state: dict[str, torch.Tensor]
    base_model: str
    base_hash: str
    config: dict


def load_adapter(path: str | Path) -> Adapter:
    path = Path(path)
    try:
        config = json.loads((path / ADAPTER_CONFIG).read_text())
        ours = config["musicrl"]
        settings = LoraSettings(**ours["lora"])
        base_model, base_hash = str(ours["base_model"]), str(ours["base_hash"])
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise InputError(f"{path}/{ADAPTER_CONFIG} is not a musicrl adapter config: {err}") from None
    if not (path / ADAPTER_WEIGHTS).is_file():
        raise InputError(f"{path} has no {ADAPTER_WEIGHTS}")
    return Adapter(settings, load_file(str(path / ADAPTER_WEIGHTS)), base_model, base_hash, config)


def merge_adapter(base: AudioLM, adapter: Adapter, lam: float = 1.0) -> dict[str, torch.Tensor]:
    """The state dict of ``base`` + lam * ``adapter`` (``base`` is left unchanged)."""
    import copy

    lm = apply_lora(copy.deepcopy(base), adapter.settings)
    load_adapter_state(lm, {k: v.float() for k, v in adapter.state.items()})
    return merged_state(lm, lam)
