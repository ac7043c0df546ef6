"""J-BOND: its reward, return, baseline and loss by hand, and the ``bond`` recipe on the debug model."""

from __future__ import annotations

import json
import math

import pytest
import torch
import torch.nn.functional as F

from models.debug import debug_generator
from models.errors import InputError
from models.module_io import read_header
from musicrl.advantages import leave_one_out_advantages
from musicrl.config import load_config
from musicrl.losses import JBOND_WORSE_REWARD, better_anchor, jbond_loss, jbond_returns, jbond_reward
from musicrl.recipes import bond
from musicrl.value_model import ema_update


def test_reward_is_minus_log_16_only_when_strictly_worse_than_both():
    policy = torch.tensor([0.1, 0.1, 0.5, 0.2, 0.3])
    anchors = torch.tensor([[0.2, 0.3], [0.1, 0.3], [0.2, 0.3], [0.1, 0.3], [0.3, 0.3]])
    # worse than both | tie with one (not worse) | better than both | between | tie with both
    expected = torch.tensor([-math.log(16), 0.0, 0.0, 0.0, 0.0])
    assert torch.allclose(jbond_reward(policy, anchors), expected)
    assert JBOND_WORSE_REWARD == pytest.approx(-2.772588722)
    # rank-based: any strictly increasing transform of the reward gives the same signal
    assert torch.equal(jbond_reward(policy.exp() * 3, anchors.exp() * 3), jbond_reward(policy, anchors))


def test_better_anchor_ties_keep_the_first_and_nan_never_wins():
    anchors = torch.tensor([[0.2, 0.3], [0.3, 0.2], [0.4, 0.4], [float("nan"), 0.1], [0.1, float("nan")]])
    assert better_anchor(anchors).tolist() == [1, 0, 0, 1, 0]


def test_return_subtracts_the_log_ratio_and_the_baseline_is_the_others_mean():
    r_bw = torch.tensor([-math.log(16), 0.0, 0.0])
    policy_lp, anchor_lp = torch.tensor([-10.0, -5.0, -7.0]), torch.tensor([-12.0, -5.5, -7.0])
    returns = jbond_returns(r_bw, policy_lp, anchor_lp)
    # -2.7726 - (-10 + 12) = -4.7726 ; 0 - (-5 + 5.5) = -0.5 ; 0 - 0 = 0
    assert returns.tolist() == pytest.approx([-math.log(16) - 2.0, -0.5, 0.0], abs=1e-6)
    adv = leave_one_out_advantages(returns, returns.numel())
    assert adv.tolist() == pytest.approx([-4.7726 - (-0.25), -0.5 - (-4.7726 / 2), 0 - (-5.2726 / 2)], abs=1e-4)


def test_loss_by_hand_on_one_step_of_one_codebook():
    """B = 1, K = 1, T = 1, V = 2: every term is a closed form."""
    policy = torch.tensor([[[[0.0, math.log(3.0)]]]], requires_grad=True)  # π = (1/4, 3/4)
    anchor = torch.tensor([[[[0.0, 0.0]]]])  # π_a = (1/2, 1/2)
    forward = torch.tensor([[[[math.log(4.0), 0.0]]]], requires_grad=True)  # π(y') = (4/5, 1/5)
    tokens, fw_tokens = torch.tensor([[[1]]]), torch.tensor([[[0]]])
    mask = torch.ones(1, 1, 1, dtype=torch.bool)
    adv = torch.tensor([2.0])
    out = jbond_loss(policy, anchor, tokens, mask, adv, forward, fw_tokens, mask, beta=0.5, gamma=1.0)
    kl = 0.25 * math.log(0.25 / 0.5) + 0.75 * math.log(0.75 / 0.5)
    assert out.forward.item() == pytest.approx(-math.log(0.8))
    assert out.backward.item() == pytest.approx(-2.0 * math.log(0.75))
    assert out.regulariser.item() == pytest.approx(kl)
    assert out.loss.item() == pytest.approx(0.5 * -math.log(0.8) + 0.5 * -2.0 * math.log(0.75) + kl)
    # β = 0 is pure SFT on the better anchor sample: no gradient reaches the policy-sample logits but the KL's
    only_fw = jbond_loss(policy, anchor, tokens, mask, adv, forward, fw_tokens, mask, beta=0.0, gamma=0.0)
    only_fw.loss.backward()
    assert policy.grad is None or torch.all(policy.grad == 0)
    assert torch.allclose(forward.grad, (F.softmax(forward, -1) - torch.tensor([1.0, 0.0])).detach())
    with pytest.raises(ValueError):
        jbond_loss(policy, anchor, tokens, mask, adv, forward, fw_tokens, mask, beta=1.5)


def test_anchor_ema_update_by_hand():
    anchor, policy = torch.nn.Linear(1, 1, bias=False), torch.nn.Linear(1, 1, bias=False)
    anchor.weight.data.fill_(1.0)
    policy.weight.data.fill_(2.0)
    ema_update(anchor, policy, 0.02)  # θ_a <- 0.98 · 1 + 0.02 · 2
    assert anchor.weight.item() == pytest.approx(1.02)


@pytest.fixture()
def args(tmp_path, embedder_dir):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("calm piano\nfast techno\nsad violin\nloud rock\n")
    return ["model=debug", f"prompts={prompts}", f"embedder={embedder_dir}", f"out={tmp_path / 'run'}",
            "corpus=/nonexistent", "duration=0.3", "prompts_per_step=2", "eval_prompts=2", "lr=1e-3", "judges=none"]


def config(args, *more) -> bond.Config:
    return load_config(bond.Config, None, [*args, *more])


@pytest.mark.parametrize(("more", "message"), [
    ([], "no reward"),
    (["adherence=1", "beta=2"], "beta"),
    (["adherence=1", "eta=0"], "eta"),
    (["adherence=1", "prompts_per_step=1"], "prompts_per_step"),
    (["preference=1"], "reward model"),
])
def test_refused_configs_write_nothing(args, tmp_path, more, message):
    with pytest.raises(InputError, match=message):
        bond.main(config(args, *more))
    assert not (tmp_path / "run").exists()


def test_step_moves_the_policy_then_the_anchor_follows_by_eta(args):
    state = bond.setup(config(args, "adherence=1", "eta=0.5"))
    before = {k: v.clone() for k, v in state.gen.lm.state_dict().items()}
    metrics = bond.step(state, bond.next_batch(state))
    assert metrics["kl"] == pytest.approx(0.0, abs=1e-5) and metrics["log_ratio"] == pytest.approx(0.0, abs=1e-3)
    assert 0.0 <= metrics["worse_than_both"] <= 1.0
    after, anchor = state.gen.lm.state_dict(), state.anchor.state_dict()
    moved = [k for k in before if before[k].is_floating_point() and not torch.equal(before[k], after[k])]
    assert moved
    for k in moved:  # θ_a = 0.5 θ_0 + 0.5 θ_1
        assert torch.allclose(anchor[k], 0.5 * before[k] + 0.5 * after[k], atol=1e-6), k


def test_run_keeps_lineage_validates_and_resumes(args, tmp_path):
    out = tmp_path / "run"
    bond.main(config(args, "adherence=1", "steps=2", "eval_every=1", "save_every=1", "log_every=1"))
    summary = bond.main(config(args, "adherence=1", "steps=3", "eval_every=1", "save_every=1", "log_every=1"))
    assert summary["step"] == 3
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [1, 2, 3]
    assert {"forward", "backward", "kl", "worse_than_both", "ties", "reward_anchor"} <= log[0].keys()
    val = [json.loads(line) for line in (out / "validation.jsonl").read_text().splitlines()]
    assert [r["step"] for r in val] == [0, 1, 2, 3] and val[0]["val_kl"] == 0.0 and val[-1]["val_kl"] > 0
    lineage = read_header(out / "model" / "musicrl.json", "generator").lineage
    assert lineage["recipe"] == "bond" and (lineage["beta"], lineage["eta"], lineage["gamma"]) == (0.5, 0.02, 0.0)
    assert lineage["rewards"] == {"adherence": 1.0} and lineage["step"] == 3


def test_diversity_is_ranked_within_the_three_samples_of_a_prompt(args):
    state = bond.setup(config(args, "diversity=1"))
    assert state.reward.rewards["diversity"].samples_per_prompt == bond.GROUP
    metrics = bond.step(state, bond.next_batch(state))
    assert math.isfinite(metrics["loss"]) and metrics["reward_diversity"] >= 0


def test_two_processes_equal_one(args, tmp_path):
    """Each rank samples its prompts; the returns are gathered so the leave-one-out baseline is the whole
    batch's, DDP averages gradients and the anchors follow identical weights: 2 processes make the updates
    of 1 (up to float summation order, amplified by Adam on ~0 gradients: within 10 % of each update)."""
    from tests.test_distributed import torchrun, weights

    more = ["adherence=1", "steps=2", "eval_every=2", "log_every=1", "seed=3"]
    bond.main(config(args, *more, f"out={tmp_path / 'one'}"))
    two = [a for a in args if not a.startswith("out=")]
    torchrun(2, ["bond", *two, *more, f"out={tmp_path / 'two'}"])
    start = debug_generator().lm.state_dict()
    for name in ("lm", "anchor"):
        one_w, two_w = weights(tmp_path / "one", name), weights(tmp_path / "two", name)
        for key, w0 in start.items():
            if not w0.is_floating_point():
                continue
            update = (one_w[key] - w0).norm()
            assert update > 0, (name, key)
            assert (one_w[key] - two_w[key]).norm() <= 0.1 * update, (name, key)
    logs = [[json.loads(x) for x in (tmp_path / d / "log.jsonl").read_text().splitlines()] for d in ("one", "two")]
    assert [r["reward"] for r in logs[0]] == pytest.approx([r["reward"] for r in logs[1]], rel=1e-5)
