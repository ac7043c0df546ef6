"""A steerable LM: one policy for every reward trade-off, conditioned in parameter space (CLP, Wang et al. 2024,
arXiv:2407.15762; rewarded soups, Ramé et al. 2023).

    steer = SteerableLM(lm, ("adherence", "quality"), scope="all")   # one parameter set per objective
    steer.set_weights({"adherence": 0.7, "quality": 0.3})             # lm now holds θ(w) = Σ_i w_i θ_i
    gen_w = steered(gen, steer, {"adherence": 0.7, "quality": 0.3})   # a plain MusicGenerator at that w

The conditioned parameters (``scope``) of the LM are a convex mix of one set θ_i per objective, w on the simplex
(weights are normalised to sum 1). Training (``musicrl train clp``) samples w, sets θ(w) into ``lm``, runs
the one sampling path and the loss on ``lm`` as usual, then :meth:`SteerableLM.route_gradients` turns the
gradient g of each conditioned parameter into w_i·g on θ_i (the chain rule of θ(w) = Σ w_i θ_i); parameters
outside the scope are shared by every w and trained directly. Rewarded soups are the same object built from
separately trained models (:meth:`SteerableLM.from_models`): CLP = soups' parametrisation + multi-task training.

Why parameter space (the CLP paper's choice) and not a w-embedding input: θ(w) materialises into an ordinary
``AudioLM``, so generation keeps one sampling path at zero extra cost per step, CFG, the KV cache and every
tool that reads an LM work unchanged, and the w = vertex policies are directly comparable with soups.
Scopes (the paper's variants): ``all`` (every parameter), ``attention`` (self- and cross-attention
projections only), ``logits`` (the output heads only) — memory grows with the objectives times the scope.

On disk a steerable checkpoint is a normal checkpoint directory (``lm.safetensors`` holds θ at uniform w,
so any tool loads it as a plain model) plus ``steerable.safetensors`` (keys ``"<objective>/<parameter>"``)
and ``steerable.json`` (objectives, scope).
"""

from __future__ import annotations

import copy
import hashlib
import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch
from safetensors.torch import save_file
from torch import nn

from models.errors import InputError
from models.generator import MusicGenerator
from models.lm import AudioLM
from models.module_io import read_header, read_tensors, write_header

SCOPES = ("all", "attention", "logits")
STEERABLE_FILE = "steerable.safetensors"
STEERABLE_HEADER = "steerable.json"


def conditioned_names(lm: nn.Module, scope: str) -> list[str]:
    """The parameter names of ``lm`` that a scope conditions on w (in ``named_parameters`` order)."""
    if scope not in SCOPES:
        raise InputError(f"scope must be one of {', '.join(SCOPES)}, got {scope!r}")
    keep = {
        "all": lambda name: True,
        "attention": lambda name: "_attn." in name,
        "logits": lambda name: name.startswith("heads."),
    }[scope]
    names = [name for name, _ in lm.named_parameters() if keep(name)]
    if not names:
        raise InputError(f"scope {scope!r} selects no parameter of this LM")
    return names


class SteerableLM(nn.Module):
    """``lm`` (the module that runs) whose ``scope`` parameters hold θ(w) = Σ_i w_i θ_i, one θ_i per objective.

    experts[objective][j] is θ_objective of the j-th conditioned parameter (``names[j]``); each starts as a
    copy of ``lm``'s. ``weights`` is the current w (a dict over the objectives, summing to 1)."""

    def __init__(self, lm: AudioLM, objectives: Sequence[str], scope: str = "all") -> None:
        super().__init__()
        objectives = tuple(objectives)
        if len(objectives) < 2 or len(set(objectives)) != len(objectives):
            raise InputError(f"a steerable policy needs 2 or more distinct objectives, got {list(objectives)}")
        self.lm, self.objectives, self.scope = lm, objectives, scope
        self.names = conditioned_names(lm, scope)
        params = dict(lm.named_parameters())
        self.experts = nn.ModuleDict({
            obj: nn.ParameterList([nn.Parameter(params[n].detach().clone()) for n in self.names]) for obj in objectives
        })
        self.weights: dict[str, float] = self.normalise({obj: 1.0 for obj in objectives})
        self.set_weights(self.weights)

    @classmethod
    def from_models(cls, models: Mapping[str, AudioLM], scope: str = "all") -> SteerableLM:
        """Rewarded soups: θ_i = the conditioned parameters of ``models[objective]`` (one RL run per reward,
        same architecture); parameters outside the scope come from the first model."""
        objectives = list(models)
        first = models[objectives[0]]
        steer = cls(copy.deepcopy(first), objectives, scope)
        for obj in objectives:
            if models[obj].cfg != first.cfg:
                raise InputError(f"the {obj} model has another LM architecture than the {objectives[0]} model")
            params = dict(models[obj].named_parameters())
            with torch.no_grad():
                for expert, name in zip(steer.experts[obj], steer.names, strict=True):
                    expert.copy_(params[name])
        steer.set_weights(steer.weights)
        return steer

    def normalise(self, weights: Mapping[str, float]) -> dict[str, float]:
        """w over the objectives (missing ones 0), each finite and >= 0, scaled to sum 1 (InputError else)."""
        unknown = [name for name in weights if name not in self.objectives]
        if unknown:
            raise InputError(f"unknown objective {unknown[0]!r}; this model steers {', '.join(self.objectives)}")
        w = {obj: float(weights.get(obj, 0.0)) for obj in self.objectives}
        if any(not math.isfinite(v) or v < 0 for v in w.values()):
            raise InputError("objective weights must be finite numbers >= 0")
        total = sum(w.values())
        if total <= 0:
            raise InputError("at least one objective weight must be > 0")
        return {obj: v / total for obj, v in w.items()}

    @torch.no_grad()
    def mixed(self, weights: Mapping[str, float]) -> dict[str, torch.Tensor]:
        """θ(w) of the conditioned parameters: {name: Σ_i w_i θ_i}."""
        w = self.normalise(weights)
        out = {}
        for j, name in enumerate(self.names):
            out[name] = sum(w[obj] * self.experts[obj][j] for obj in self.objectives)
        return out

    @torch.no_grad()
    def set_weights(self, weights: Mapping[str, float]) -> dict[str, float]:
        """Write θ(w) into ``lm``'s conditioned parameters; returns the normalised w."""
        self.weights = self.normalise(weights)
        params = dict(self.lm.named_parameters())
        for name, value in self.mixed(self.weights).items():
            params[name].copy_(value)
        return self.weights

    @torch.no_grad()
    def route_gradients(self) -> None:
        """After backward through ``lm`` at the current w: θ_i.grad += w_i · g for each conditioned parameter
        with gradient g, and that parameter's own gradient is cleared (it is not trained directly)."""
        params = dict(self.lm.named_parameters())
        for j, name in enumerate(self.names):
            grad = params[name].grad
            if grad is None:
                continue
            for obj in self.objectives:
                expert = self.experts[obj][j]
                update = self.weights[obj] * grad
                expert.grad = update.clone() if expert.grad is None else expert.grad + update
            params[name].grad = None

    def trainable_parameters(self) -> list[nn.Parameter]:
        """What the optimiser updates: every θ_i and the LM's shared (unconditioned) parameters."""
        conditioned = set(self.names)
        shared = [p for name, p in self.lm.named_parameters() if name not in conditioned and p.requires_grad]
        return [p for obj in self.objectives for p in self.experts[obj]] + shared

    @torch.no_grad()
    def materialise(self, weights: Mapping[str, float]) -> AudioLM:
        """A new plain ``AudioLM`` at w (``lm`` is left as it is)."""
        lm = copy.deepcopy(self.lm)
        params = dict(lm.named_parameters())
        for name, value in self.mixed(weights).items():
            params[name].copy_(value)
        return lm.eval()

    def save(self, path: str | Path, lineage: dict | None = None) -> None:
        """Write ``steerable.safetensors`` and ``steerable.json`` into a checkpoint directory ``path``."""
        path = Path(path)
        tensors = {f"{obj}/{name}": self.experts[obj][j].detach().cpu().contiguous()
                   for obj in self.objectives for j, name in enumerate(self.names)}
        save_file(tensors, str(path / STEERABLE_FILE))
        write_header(path / STEERABLE_HEADER, "steerable", {"objectives": list(self.objectives), "scope": self.scope},
                     lineage)
        for name in (STEERABLE_FILE, STEERABLE_HEADER):
            (path / name).chmod(0o644)

    @classmethod
    def load(cls, path: str | Path, lm: AudioLM) -> SteerableLM:
        """The steerable parts saved in checkpoint directory ``path`` around ``lm`` (the checkpoint's LM)."""
        path = Path(path)
        header = read_header(path / STEERABLE_HEADER, "steerable")
        try:
            objectives, scope = list(header.config["objectives"]), str(header.config["scope"])
        except (KeyError, TypeError) as err:
            raise InputError(f"{path / STEERABLE_HEADER} is malformed: {err!r}") from None
        steer = cls(lm, objectives, scope)
        tensors = read_tensors(path / STEERABLE_FILE)
        expected = {f"{obj}/{name}" for obj in objectives for name in steer.names}
        if set(tensors) != expected:
            missing = sorted(expected - set(tensors))[:1] or sorted(set(tensors) - expected)[:1]
            raise InputError(f"{path / STEERABLE_FILE} does not match its header (first mismatch: {missing[0]})")
        with torch.no_grad():
            for obj in objectives:
                for j, name in enumerate(steer.names):
                    value = tensors[f"{obj}/{name}"]
                    if value.shape != steer.experts[obj][j].shape:
                        raise InputError(f"{path / STEERABLE_FILE}: {obj}/{name} has shape {tuple(value.shape)}")
                    steer.experts[obj][j].copy_(value.float())
        steer.set_weights(steer.weights)
        return steer


def is_steerable(path: str | Path) -> bool:
    return (Path(path) / STEERABLE_HEADER).is_file()


def load_steerable(path: str | Path) -> tuple[MusicGenerator, SteerableLM]:
    """A steerable checkpoint directory -> (its generator, the steerable LM around the generator's LM)."""
    from models.checkpoint import load_checkpoint

    if not is_steerable(path):
        raise InputError(f"{path} is not a steerable model (no {STEERABLE_HEADER}; train one with musicrl train clp)")
    gen = load_checkpoint(path)
    return gen, SteerableLM.load(path, gen.lm)


def weights_label(weights: Mapping[str, float]) -> str:
    """``adherence=0.7,quality=0.3`` (normalised weights, 3 decimals)."""
    return ",".join(f"{obj}={w:.3g}" for obj, w in weights.items())


def steered(gen: MusicGenerator, steer: SteerableLM, weights: Mapping[str, float]) -> MusicGenerator:
    """A plain generator at w: same conditioner and codec, the LM materialised at θ(w); its name and
    checkpoint hash say which w (so clips and leaderboards tell the points apart)."""
    w = steer.normalise(weights)
    label = weights_label(w)
    digest = hashlib.sha256(f"{gen.checkpoint_hash}|{label}".encode()).hexdigest()[:16]
    return MusicGenerator(lm=steer.materialise(w), conditioner=gen.conditioner, codec=gen.codec,
                          name=f"{gen.name} @ {label}", checkpoint_hash=digest, max_duration=gen.max_duration,
                          cfg_free=gen.cfg_free, meta={**gen.meta, "steer": w})
