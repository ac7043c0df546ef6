"""What the policy-optimisation recipes (rl, bond, clp) share — one place each (no recipe imports another).

    captions = training_prompts(cfg)                          # cfg.prompts file, or the corpus's train split
    reward, info = reward_from(cfg, gen.sample_rate)          # rewards.build_reward from the cfg's weights
    validator = Validator(reward, validation_records(cfg), load_judges(cfg, sr), cfg.duration, cfg.temperature)
    scores = validator(gen, reference)                        # {"val_reward", "val_kl", "val_<reward>", "val_judges"}
    keep_best(cfg, gen, best, scores, lineage)                # out/best: highest val_reward within the KL budget
    train("rl", state, step, next_batch, validate, save)      # every policy recipe's loop, with (rl, bond):
    validate = partial(validate_keeping_best, lineage_of=...)  # score, keep out/best, log validation.jsonl
    save = partial(save_last, lineage_of=...)                  # out/model and metrics.json (best_summary)

A recipe config that uses these has the fields: prompts, corpus, eval_prompts, judges, kl_budget, out, the four
reward weights (adherence, quality, diversity, preference), samples_per_prompt, embedder, quality_model,
reward_model.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import torch

from models.checkpoint import save_checkpoint
from models.errors import InputError
from models.generator import MusicGenerator
from models.lm import AudioLM
from models.registry import ASSETS_DIR
from models.sampling import SamplingParams
from musicrl import rewards
from musicrl.corpus_data import split_records, stated_attributes
from musicrl.losses import kl_to_reference
from musicrl.rollouts import sample_rollout, score_rollout
from musicrl.train_state import Loop


def training_prompts(cfg) -> list[str]:
    """The training captions: the lines of ``cfg.prompts``, or the corpus's train split (InputError if none)."""
    if cfg.prompts is not None:
        try:
            lines = cfg.prompts.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as err:
            raise InputError(f"cannot read prompts file {cfg.prompts}: {err}") from None
        captions = [line.strip() for line in lines if line.strip()]
    else:
        captions = [r["caption"] for r in split_records(cfg.corpus, "train")]
    if not captions:
        raise InputError(f"no training prompts in {cfg.prompts or cfg.corpus}")
    return captions


def reward_from(cfg, sample_rate: int) -> tuple[rewards.WeightedReward, dict]:
    """``rewards.build_reward`` from a recipe config's reward weights, scorers and reward model (rl, bond, clp)."""
    weights = {name: getattr(cfg, name) for name in rewards.TRAINING_REWARDS}
    return rewards.build_reward(weights, sample_rate, cfg.samples_per_prompt, cfg.embedder, cfg.quality_model,
                                cfg.reward_model)


def validation_records(cfg) -> list[dict]:
    """``cfg.eval_prompts`` held-out records spread over the corpus's valid split (the first prompts of the
    prompts file when there is no corpus)."""
    if cfg.prompts is not None and not (cfg.corpus / "manifest.jsonl").is_file():
        return [{"caption": p} for p in training_prompts(cfg)[: cfg.eval_prompts]]
    records = split_records(cfg.corpus, "valid")
    step = max(1, len(records) // cfg.eval_prompts)
    return records[::step][: cfg.eval_prompts]


def load_judges(cfg, sample_rate: int):
    if cfg.judges == "none":
        return None
    path = Path(cfg.judges) if cfg.judges else ASSETS_DIR / "judges"
    if not path.is_dir():
        if cfg.judges:
            raise InputError(f"judges {cfg.judges} is not a directory")
        return None
    from evaluation.judges import Judges

    judges = Judges.load(path)
    return judges if judges.sample_rate == sample_rate else None


class Validator:
    """Held-out prompts with fixed seeds: every reward component, the exact KL to π_0 and (when the
    judges are installed) the share of the prompts' stated attributes they hear. ``group``: samples per
    prompt (the diversity reward's siblings; 1 without it). Shared by rl, bond and clp."""

    def __init__(self, reward: rewards.WeightedReward, records: list[dict], judges, duration: float,
                 temperature: float, group: int = 1) -> None:
        self.reward, self.duration, self.temperature = reward, duration, temperature
        self.prompts = [r["caption"] for r in records]
        self.g = group if "diversity" in reward.rewards else 1
        self.seeds = [10_000 + i for i in range(len(self.prompts) * self.g)]
        truth = {r["caption"]: stated_attributes(r) if "style" in r else {} for r in records}
        self.attributes = rewards.AttributeMatch(judges, truth) if judges is not None and records else None

    @torch.no_grad()
    def __call__(self, gen: MusicGenerator, reference: AudioLM, reward: rewards.WeightedReward | None = None
                 ) -> dict[str, float]:
        """Scores of ``gen``'s samples; ``reward`` overrides the mix (CLP validates at several weights)."""
        if not self.prompts:
            return {}
        reward = reward or self.reward
        params = SamplingParams(cfg=1.0, temperature=self.temperature, top_k=0)
        rollout = sample_rollout(gen, self.prompts, self.seeds, self.duration, params, self.g)
        rollout = score_rollout(rollout, policy=gen.lm, reference=reference)
        kl = kl_to_reference(rollout.policy_logits, rollout.reference_logits, rollout.mask)
        audio = gen.decode(rollout.codes)[:, 0].cpu()
        parts = reward.components(rollout.prompts, audio, rollout.codes.cpu())
        total = rewards.mix_rewards(parts, reward.weights)
        out = {"val_reward": total.mean().item(), "val_kl": kl.mean().item()}
        out.update({f"val_{name}": value.mean().item() for name, value in parts.items()})
        if self.attributes is not None:
            match = self.attributes(rollout.prompts, audio)
            out["val_judges"] = match[~match.isnan()].mean().item() if (~match.isnan()).any() else float("nan")
        return out


def keep_best(cfg, gen: MusicGenerator, best: dict, scores: dict[str, float], lineage: dict) -> dict:
    """``out/best`` follows the highest validation reward among validations with KL ≤ ``cfg.kl_budget`` (0 =
    any); returns the (possibly new) best record {"step", "reward", "kl"}."""
    within = not cfg.kl_budget or scores["val_kl"] <= cfg.kl_budget
    if within and scores["val_reward"] > best.get("reward", float("-inf")):
        best = {"step": lineage["step"], "reward": scores["val_reward"], "kl": scores["val_kl"]}
        save_checkpoint(gen, Path(cfg.out) / "best", lineage={**lineage, "validation": scores})
    return best


def train(recipe: str, state, step: Callable, next_batch: Callable, validate: Callable, save: Callable) -> None:
    """The policy recipes' loop (``musicrl.train_state.Loop`` does the logging, time limit and train state):
    validate the init at step 0, ``step(state, next_batch(state))`` until ``cfg.steps``, validate every
    ``cfg.eval_every`` steps and at the last (before the train state is saved, so a resumed run has its best
    checkpoint), then rank 0 ``save(state)``s the final model. ``state`` has cfg, dist, log, modules, opt, step
    and, where the recipe keeps a best checkpoint, best."""
    cfg = state.cfg

    def before_save(stop: bool) -> dict:
        if state.step % cfg.eval_every == 0 or state.step == cfg.steps:
            validate(state)
        return {"best": state.best} if hasattr(state, "best") else {}

    with Loop(recipe, cfg, state.log, state.dist, state.modules, {"opt": state.opt}, state.step) as loop:
        if state.step == 0:
            validate(state)  # the init's scores: where the run starts from
        while state.step < cfg.steps:
            metrics = step(state, next_batch(state))
            state.step += 1
            if loop.after_step(state.step, metrics, before_save=before_save):
                break
        if state.dist.is_main:
            save(state)


def validate_keeping_best(state, lineage_of: Callable) -> None:
    """A recipe's ``validate`` for ``train`` (rl, bond): rank 0 scores the held-out prompts, keeps
    ``out/best`` (:func:`keep_best`) and logs the scores to ``validation.jsonl``; ``lineage_of(state)`` is the
    recipe's lineage. ``state`` has cfg, dist, gen, reference, validator, best, step, val_log."""
    if not state.dist.is_main:
        return
    scores = state.validator(state.gen, state.reference)
    state.best = keep_best(state.cfg, state.gen, state.best, scores, lineage_of(state))
    state.val_log.write({"step": state.step, **scores, "best_step": state.best.get("step", -1)})


def best_summary(state) -> dict:
    """What rl and bond return and write to ``metrics.json``: the last step, the two checkpoints, the best
    validation."""
    out = Path(state.cfg.out)
    return {"step": state.step, "model": str(out / "model"), "best": str(out / "best"), "best_validation": state.best}


def save_last(state, lineage_of: Callable) -> None:
    """A recipe's ``save`` for ``train`` (rl, bond): ``out/model`` (the last policy) and ``metrics.json``."""
    out = Path(state.cfg.out)
    save_checkpoint(state.gen, out / "model", lineage=lineage_of(state))
    (out / "metrics.json").write_text(json.dumps(best_summary(state), indent=2))
