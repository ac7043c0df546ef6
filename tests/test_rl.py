"""The ``rl`` recipe (MusicRL's KL-regularised REINFORCE) on the debug model with a tiny embedder."""

from __future__ import annotations

import json
import math

import pytest
import torch

from models.debug import debug_generator
from models.errors import InputError
from models.module_io import read_header
from musicrl.config import load_config
from musicrl.recipes import rl
from musicrl.value_model import ValueModel, ema_update


@pytest.fixture()
def args(tmp_path, embedder_dir):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("calm piano\nfast techno\nsad violin\n")
    return ["model=debug", f"prompts={prompts}", f"embedder={embedder_dir}", f"out={tmp_path / 'run'}",
            "corpus=/nonexistent", "duration=0.3", "prompts_per_step=2", "samples_per_prompt=2", "eval_prompts=2",
            "lr=1e-3", "judges=none"]


def config(args, *more) -> rl.Config:
    return load_config(rl.Config, None, [*args, *more])


def test_ema_update_by_hand():
    a, b = torch.nn.Linear(1, 1, bias=False), torch.nn.Linear(1, 1, bias=False)
    a.weight.data.fill_(1.0)
    b.weight.data.fill_(3.0)
    ema_update(a, b, 0.25)  # (1 - 0.25) * 1 + 0.25 * 3 = 1.5
    assert a.weight.item() == pytest.approx(1.5)
    with pytest.raises(ValueError):
        ema_update(a, b, 0.0)


def test_value_model_starts_at_zero_on_a_copy_of_the_lm():
    gen = debug_generator()
    value = ValueModel.from_lm(gen.lm)
    text = gen.encode_text(["calm"])
    inputs = torch.zeros(1, gen.lm.cfg.num_codebooks, 5, dtype=torch.long)
    v = value(inputs, text)
    assert v.shape == (1, gen.lm.cfg.num_codebooks, 5) and torch.all(v == 0)
    assert value.trunk is not gen.lm
    for (name, p), q in zip(value.trunk.named_parameters(), gen.lm.parameters(), strict=True):
        assert torch.equal(p, q), name


@pytest.mark.parametrize("preset, more, message", [
    ("nope", [], "unknown preset"),
    ("musicrl-u", [], "reward_model"),
    ("musicrl-r", ["adherence=2"], "sets the reward weights"),
    ("musicrl-ru", ["reward_model=."], "musicrl-r checkpoint"),
    ("", ["adherence=1", "baseline=loo", "samples_per_prompt=1"], "samples_per_prompt >= 2"),
    ("", [], "no reward"),
])
def test_refused_configs_write_nothing(args, tmp_path, preset, more, message):
    with pytest.raises(InputError, match=message):
        rl.setup(config(args, f"preset={preset}", *more))
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("baseline, anchor", [("value", "reference"), ("loo", "reference"), ("value", "ema")])
def test_step_kl_is_zero_first_then_parameters_move(args, baseline, anchor):
    state = rl.setup(config(args, "adherence=1", "diversity=0.5", f"baseline={baseline}", f"kl_anchor={anchor}",
                            "ema_rate=0.5"))
    before = {n: p.detach().clone() for n, p in state.gen.lm.named_parameters()}
    reference = {n: p.detach().clone() for n, p in state.reference.named_parameters()}
    metrics = rl.step(state, rl.next_batch(state))
    assert all(math.isfinite(v) for v in metrics.values()), metrics
    assert metrics["kl"] == 0.0 and metrics["kl_anchor"] == 0.0  # the policy IS π_0 at step 0
    assert {"reward_adherence", "reward_diversity"} <= set(metrics)
    assert any(not torch.equal(p.detach(), before[n]) for n, p in state.gen.lm.named_parameters())
    assert all(torch.equal(p, reference[n]) for n, p in state.reference.named_parameters())
    if baseline == "value":
        assert state.value.head.weight.abs().sum() > 0  # the value head learned
    if anchor == "ema":  # the anchor moved half way toward the updated policy, the reference did not
        assert state.anchor is not state.reference
        lm_after = dict(state.gen.lm.named_parameters())
        for name, p in state.anchor.named_parameters():
            assert torch.allclose(p, 0.5 * before[name] + 0.5 * lm_after[name].detach(), atol=1e-6), name
    state.step += 1
    second = rl.step(state, rl.next_batch(state))
    assert second["kl"] > 0


def test_run_keeps_the_best_checkpoint_with_lineage_and_resumes(args, tmp_path):
    out = tmp_path / "run"
    rl.main(config(args, "adherence=1", "steps=2", "eval_every=1", "save_every=1", "log_every=1"))
    summary = rl.main(config(args, "adherence=1", "steps=3", "eval_every=1", "save_every=1", "log_every=1"))
    assert summary["step"] == 3
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [1, 2, 3]  # resumed at 2: step 3 only was added
    val = [json.loads(line) for line in (out / "validation.jsonl").read_text().splitlines()]
    assert [r["step"] for r in val] == [0, 1, 2, 3] and val[0]["val_kl"] == 0.0
    best = read_header(out / "best" / "musicrl.json", "generator").lineage
    assert best["recipe"] == "rl" and best["rewards"] == {"adherence": 1.0}
    assert best["step"] == summary["best_validation"]["step"]
    assert best["validation"]["val_reward"] == pytest.approx(max(r["val_reward"] for r in val))
    last = read_header(out / "model" / "musicrl.json", "generator").lineage
    assert last["step"] == 3 and last["init"] == "debug"


def test_kl_budget_excludes_validations_beyond_it(args, tmp_path):
    summary = rl.main(config(args, "adherence=1", "steps=2", "eval_every=1", "kl_budget=1e-12", "lr=1e-1"))
    assert summary["best_validation"]["step"] == 0  # only the init (KL 0) is within a budget of ~0


def test_two_processes_equal_one(args, tmp_path):
    """Under torchrun each rank samples its share of the prompts; DDP averages the policy's and the value
    model's gradients, so 2 processes make the updates of 1 (the value trunk's unread heads and norm take
    no gradient: DDP would otherwise wait for them). Equal up to float summation order, which Adam turns
    into a full-size step on a gradient that is ~0 in both: so each tensor's two updates must agree to
    within 10 % of the update's own size, not bit for bit."""
    from tests.test_distributed import torchrun, weights

    more = ["adherence=1", "steps=2", "eval_every=2", "log_every=1", "seed=3"]
    rl.main(config(args, *more, f"out={tmp_path / 'one'}"))
    two = [a for a in args if not a.startswith("out=")]
    torchrun(2, ["rl", *two, *more, f"out={tmp_path / 'two'}"])
    start = debug_generator().lm.state_dict()
    one_w, two_w = weights(tmp_path / "one", "lm"), weights(tmp_path / "two", "lm")
    assert one_w.keys() == two_w.keys()
    for key, w0 in start.items():
        update = (one_w[key] - w0).norm()
        assert update > 0, key
        assert (one_w[key] - two_w[key]).norm() <= 0.1 * update, key
    assert weights(tmp_path / "one", "value").keys() == weights(tmp_path / "two", "value").keys()
    logs = [[json.loads(x) for x in (tmp_path / d / "log.jsonl").read_text().splitlines()] for d in ("one", "two")]
    assert [r["reward"] for r in logs[0]] == pytest.approx([r["reward"] for r in logs[1]], rel=1e-5)
