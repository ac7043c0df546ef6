"""Preference reward models (``musicrl.reward_model``, recipe ``reward-model``): the WARM average, files,
the data split, a short run on a learnable synthetic vote set, the CLI from a store, and eval's column.

The synthetic votes: 0.2 s clips at 8 kHz, in every pair one clip a pure tone and the other white noise,
the tone always preferred — a relation pooled LM features separate at once. The base generator is the
debug LM and text conditioner with a tiny random spectral codec (the debug EnCodec's random codebooks
give every input the same codes), saved as a checkpoint: the RM names its base by path.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from models.debug import debug_generator
from models.errors import InputError
from musicrl.config import load_config
from musicrl.preference_data import Vote, flip_labels, prompt_bucket, read_votes, split_by_prompt
from musicrl.recipes import reward_model as recipe
from musicrl.reward_model import RewardModel, weight_average

SR = 8000


def wav_bytes(kind: str, seed: int) -> bytes:
    t = np.arange(int(0.2 * SR)) / SR
    if kind == "tone":
        x = 0.5 * np.sin(2 * np.pi * (220 + 20 * seed) * t)
    else:
        x = 0.5 * np.random.default_rng(seed).uniform(-1, 1, t.size)
    buf = io.BytesIO()
    sf.write(buf, x.astype(np.float32), SR, subtype="PCM_16", format="WAV")
    return buf.getvalue()


def store_wav(root: Path, data: bytes) -> tuple[str, str]:
    sha = hashlib.sha256(data).hexdigest()
    rel = f"audio/{sha[:2]}/{sha}.wav"
    (root / rel).parent.mkdir(parents=True, exist_ok=True)
    (root / rel).write_bytes(data)
    return rel, sha


def make_prefs(root: Path, prompts: int = 12, per_prompt: int = 3, simulated_every: int = 0) -> Path:
    """Votes where the tone beats the noise; clip A is the tone on every other vote. With
    ``simulated_every`` = n, every n-th row is a simulated listener's (who prefers the NOISE)."""
    rows, k = [], 0
    for p in range(prompts):
        for _ in range(per_prompt):
            tone, noise = store_wav(root, wav_bytes("tone", k)), store_wav(root, wav_bytes("noise", k))
            simulated = bool(simulated_every) and k % simulated_every == 0
            good, bad = (noise, tone) if simulated else (tone, noise)
            outcome = "a" if k % 2 == 0 else "b"  # chosen = the good clip, shown as A or B
            row = {"prompt": f"prompt number {p}", "label": 1.0, "outcome": outcome, "rater_id": "r",
                   "chosen_audio": good[0], "chosen_audio_sha256": good[1], "chosen_model_id": "good",
                   "rejected_audio": bad[0], "rejected_audio_sha256": bad[1], "rejected_model_id": "bad"}
            if simulated_every:
                row["simulated"] = simulated
            rows.append(row)
            k += 1
    path = root / "prefs.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.fixture(scope="module")
def base_dir(tmp_path_factory) -> Path:
    from models.checkpoint import save_checkpoint
    from models.spectral_codec import SpectralCodec, SpectralCodecConfig

    gen = debug_generator()
    with torch.random.fork_rng():
        torch.manual_seed(0)
        codec = SpectralCodec(SpectralCodecConfig(sample_rate=SR, n_fft=256, hop=160, width=16, latent_dim=8,
                                                  num_blocks=1, num_quantizers=4, codebook_size=64,
                                                  griffin_lim_iters=4))
    gen.codec = codec.eval()
    return save_checkpoint(gen, tmp_path_factory.mktemp("base") / "base")


def tiny_cfg(root: Path, out: Path, base: Path, *extra: str) -> recipe.Config:
    args = [f"prefs={root / 'prefs.jsonl'}", f"audio_root={root}", f"out={out}", f"base={base}", "batch_size=4",
            "probe_epochs=2", "epochs=1", "lr=1e-3", "probe_lr=3e-2", "warmup=1", "bootstrap=50", "save_every=5",
            "val_fraction=0.3", *extra]
    return load_config(recipe.Config, None, args)


@pytest.fixture(scope="module")
def prefs_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("app_data")
    make_prefs(root)
    return root


@pytest.fixture(scope="module")
def warm_run(prefs_root, base_dir, tmp_path_factory):
    """One WARM run with two members, shared by the tests that read its outputs."""
    out = tmp_path_factory.mktemp("rm") / "run"
    return recipe.main(tiny_cfg(prefs_root, out, base_dir, "num_models=2")), out


def test_weight_average_is_the_mean_of_the_weights():
    """Two state dicts: w = [1, 3] and [3, 5] -> [2, 4]; b = 0 and 1 -> 0.5; an integer buffer is kept."""
    a = {"w": torch.tensor([1.0, 3.0]), "b": torch.tensor(0.0), "n": torch.tensor(7)}
    b = {"w": torch.tensor([3.0, 5.0]), "b": torch.tensor(1.0), "n": torch.tensor(7)}
    avg = weight_average([a, b])
    torch.testing.assert_close(avg["w"], torch.tensor([2.0, 4.0]))
    assert avg["b"].item() == 0.5 and avg["n"].item() == 7
    assert a["w"].tolist() == [1.0, 3.0]  # inputs untouched
    with pytest.raises(ValueError, match="missing"):
        weight_average([a, {"w": b["w"]}])


def test_save_load_round_trip_gives_identical_scores(debug_gen, tmp_path):
    gen = debug_gen
    rm = RewardModel.from_generator(gen, "debug")
    with torch.no_grad():
        rm.head[1].weight.normal_()
    codes = torch.randint(0, 64, (3, 4, 7))
    captions = ["calm piano", "fast rock", "calm piano"]
    rm.save(tmp_path / "rm", lineage={"votes": {"human": 3}})
    back = RewardModel.load(tmp_path / "rm")
    torch.testing.assert_close(back.score(captions, codes), rm.score(captions, codes), rtol=0, atol=0)
    assert back.lineage["votes"] == {"human": 3}
    # the trunk is the pretrained LM: its hidden states, pooled, are what the head reads
    text = gen.encode_text(captions)
    from models.delay import build_delayed, lm_inputs

    hidden = gen.lm.hidden_states(lm_inputs(build_delayed(codes, 64), 64), text)
    torch.testing.assert_close(rm.features(text, codes), hidden.mean(1))
    # a padded row is scored like the unpadded one (causal attention, masked pooling)
    padded = torch.cat([codes[:1], torch.zeros(1, 4, 3, dtype=torch.long)], -1)
    first = type(text)(text.states[:1], text.mask[:1])
    torch.testing.assert_close(rm(first, padded, torch.tensor([7])), rm.score(captions[:1], codes[:1]),
                               atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("damage", ["missing", "no_json", "bad_json", "bad_weights", "other_kind", "wrong_shape"])
def test_a_bad_reward_model_dir_is_one_input_error(debug_gen, tmp_path, damage):
    rm = RewardModel.from_generator(debug_gen, "debug")
    path = rm.save(tmp_path / "rm")
    if damage == "missing":
        path = tmp_path / "nowhere"
    elif damage == "no_json":
        (path / "reward_model.json").unlink()
    elif damage == "bad_json":
        (path / "reward_model.json").write_text("{not json")
    elif damage == "bad_weights":
        (path / "reward_model.safetensors").write_bytes(b"garbage")
    elif damage == "other_kind":
        meta = json.loads((path / "reward_model.json").read_text())
        (path / "reward_model.json").write_text(json.dumps({**meta, "kind": "embedder"}))
    else:
        meta = json.loads((path / "reward_model.json").read_text())
        meta["config"]["lm"]["dim"] = 16
        (path / "reward_model.json").write_text(json.dumps(meta))
    with pytest.raises(InputError) as err:
        RewardModel.load(path, base=debug_gen)
    assert "\n" not in str(err.value)


def test_split_by_prompt_keeps_every_prompt_on_one_side():
    votes = [Vote(f"prompt {i % 37}", ("a", "b"), ("0" * 64, "1" * 64), 1.0) for i in range(300)]
    train, held = split_by_prompt(votes, 0.2)
    assert len(train) + len(held) == 300 and held and train
    assert not {v.prompt for v in train} & {v.prompt for v in held}
    assert all(prompt_bucket(v.prompt) < 0.2 for v in held)
    flipped, n = flip_labels(train, 0.25, seed=0)
    assert n == round(0.25 * len(train)) and sum(v.label == 0.0 for v in flipped) == n


def test_votes_kinds_ties_and_both_bad(tmp_path):
    root = tmp_path / "data"
    root.mkdir()
    rows = [json.loads(line) for line in make_prefs(root, prompts=2, per_prompt=3, simulated_every=2).open()]
    rows[1]["outcome"] = "tie"
    rows[3]["outcome"] = "both_bad"
    human, counts = read_votes(rows, root, "human")
    assert counts["simulated"] == 0 and counts["excluded_kind"] == 3 and all(not v.simulated for v in human)
    assert sorted(v.label for v in human) == [0.0, 0.5]  # row 1: a tie (0.5); row 3 (both bad) dropped; row 5: "b"
    assert counts["both_bad_dropped"] == 1 and counts["ties"] == 1
    sim, counts = read_votes(rows, root, "simulated")
    assert len(sim) == 3 and all(v.simulated for v in sim) and counts["human"] == 0
    assert len(read_votes(rows, root, "all", ties="drop")[0]) == 4
    del rows[0]["simulated"]  # a row without the field is a person's vote
    assert len(read_votes(rows, root, "human")[0]) == 3
    with pytest.raises(InputError, match="not under"):
        read_votes([{**rows[1], "chosen_audio": "audio/none.wav"}], root)
    with pytest.raises(InputError, match="leaves the audio root"):
        read_votes([{**rows[1], "chosen_audio": "../../etc/passwd"}], root)
    with pytest.raises(InputError, match="votes must be"):
        read_votes(rows, root, "robots")


def test_short_warm_run_writes_model_members_metrics_and_the_probe_leaves_the_trunk(warm_run, debug_gen):
    summary, out = warm_run
    for d in ("model", "probe", "members/0", "members/1"):
        assert (out / d / "reward_model.safetensors").is_file() and (out / d / "reward_model.json").is_file()
    assert (out / "reliability.png").stat().st_size > 1000 and (out / "state" / "state.json").is_file()
    metrics = json.loads((out / "metrics.json").read_text())
    held = metrics["held_out"]
    assert {"probe", "members", "warm", "ensemble"} <= set(held) and len(held["members"]) == 2
    for key in ("accuracy", "accuracy_ci", "bt_loss", "ece", "reliability", "decisive"):
        assert key in held["warm"]
    assert held["warm"]["accuracy"] >= 0.8  # the tone/noise relation is learnt
    assert math.isfinite(held["warm"]["bt_loss"]) and 0 <= held["warm"]["ece"] <= 1
    assert metrics["data"]["votes"]["human"] == 36 and metrics["data"]["prefs"][0]["sha256"]
    assert held["members"][0]["lr"] != held["members"][1]["lr"]

    probe = RewardModel.load(out / "probe")
    pretrained = debug_gen.lm.state_dict()  # the base checkpoint's LM
    for key, value in probe.trunk.state_dict().items():
        torch.testing.assert_close(value, pretrained[key], rtol=0, atol=0)  # the probe trained the head only
    assert not torch.equal(probe.head[1].weight, RewardModel.from_generator(debug_gen, "debug").head[1].weight)

    warm = RewardModel.load(out / "model")
    members = [RewardModel.load(out / f"members/{m}").state_dict() for m in range(2)]
    for key, value in warm.state_dict().items():
        torch.testing.assert_close(value, (members[0][key] + members[1][key]) / 2)
    assert not torch.equal(members[0]["trunk.layers.0.fc1.weight"], members[1]["trunk.layers.0.fc1.weight"])
    lineage = warm.lineage
    assert lineage["warm"]["num_models"] == 2 and len(lineage["warm"]["members"]) == 2
    assert lineage["prefs"][0]["sha256"] == metrics["data"]["prefs"][0]["sha256"]
    assert lineage["held_out"]["accuracy"] == held["warm"]["accuracy"]

    # a trained RM is a reward like the others
    from musicrl.rewards import PreferenceReward, load_preference_reward

    reward = load_preference_reward(out / "model")
    assert isinstance(reward, PreferenceReward)
    assert reward(["prompt number 0"], None, torch.randint(0, 64, (1, 4, 10))).shape == (1,)


def test_rerunning_a_finished_run_resumes_and_refuses_other_votes(warm_run, prefs_root, base_dir, tmp_path):
    _, out = warm_run
    before = (out / "model" / "reward_model.safetensors").read_bytes()
    again = recipe.main(tiny_cfg(prefs_root, out, base_dir, "num_models=2"))
    assert again["step"] == again["steps"] and (out / "model" / "reward_model.safetensors").read_bytes() == before
    other = tmp_path / "data"
    other.mkdir()
    make_prefs(other, prompts=12, per_prompt=2)
    with pytest.raises(InputError, match="other votes"):
        recipe.setup(tiny_cfg(other, out, base_dir, "num_models=2"))


def test_label_noise_flips_training_labels_only(prefs_root, tmp_path):
    cfg = tiny_cfg(prefs_root, tmp_path / "run", Path("debug"), "label_noise=0.25")
    train, held, info = recipe.load_data(cfg)
    assert info["labels_flipped"] == round(0.25 * len(train))
    truth = {v.row: v.label for v in read_votes(recipe.read_jsonl(cfg.prefs), prefs_root)[0]}
    assert sum(v.label != truth[v.row] for v in train) == info["labels_flipped"]
    assert all(v.label == truth[v.row] for v in held)
    assert not (tmp_path / "run").exists()  # loading the data writes nothing


def test_cli_trains_from_a_sqlite_store_and_refuses_bad_input(base_dir, tmp_path, capsys):
    from app.store import open_store
    from musicrl.cli import main

    data = tmp_path / "app"
    with open_store(None, data) as store:
        for p in range(10):
            for j in range(2):
                k = 2 * p + j
                tone = store.add_clip(f"song {p}", "good", "ck", {}, k, wav_bytes("tone", k), SR, 0.2)
                noise = store.add_clip(f"song {p}", "bad", "ck", {}, k, wav_bytes("noise", k), SR, 0.2)
                a, b = (tone, noise) if k % 2 else (noise, tone)
                issued = store.issue_pair(a.id, b.id, "s")
                store.record_vote(issued.token, "s", "a" if a is tone else "b", "rater", 0.2, 0.2,
                                  now=issued.pair.issued_at + timedelta(seconds=9))
                # a simulated listener who prefers the noise: left out of the default (human) run
                issued = store.issue_pair(a.id, b.id, "s")
                store.record_vote(issued.token, "s", "a" if a is noise else "b", "bot", 0.2, 0.2,
                                  now=issued.pair.issued_at + timedelta(seconds=9), simulated=True)
    out = tmp_path / "run"
    common = ["train", "reward-model", f"base={base_dir}", "batch_size=4", "probe_epochs=2", "epochs=1", "bootstrap=20",
              "probe_lr=3e-2", "lr=1e-3", "warmup=1",
              "val_fraction=0.3", f"out={out}"]
    assert main([*common[:2], "--db", str(data / "musicrl.sqlite3"), "--data-dir", str(data), *common[2:]]) == 0
    assert (out / "prefs.jsonl").is_file() and (out / "model" / "reward_model.json").is_file()
    metrics = json.loads((out / "metrics.json").read_text())
    counts = metrics["data"]["votes"]
    assert counts["human"] == 20 and counts["simulated"] == 0 and counts["excluded_kind"] == 20
    assert metrics["data"]["prefs"][0]["path"] == str(out / "prefs.jsonl")
    assert metrics["held_out"]["warm"]["accuracy"] > 0.5  # the people's (tone) preference, not the bots'

    capsys.readouterr()
    bad = [
        (["--prefs", str(tmp_path / "none.jsonl")], "does not exist"),
        (["--db", str(data / "musicrl.sqlite3"), "--prefs", str(out / "prefs.jsonl")], "not both"),
        (["--db", str(tmp_path / "none.sqlite3"), "--data-dir", str(data)], "no preference store"),
    ]
    for extra, message in bad:
        target = tmp_path / "refused"
        assert main(["train", "reward-model", *extra, "base=debug", f"out={target}"]) == 2
        err = capsys.readouterr().err.strip()
        assert message in err and len(err.splitlines()) == 1, err
        assert not target.exists()
    assert main(["train", "cfg-distill", "--prefs", str(out / "prefs.jsonl")]) == 2
    assert "only apply to the reward-model recipe" in capsys.readouterr().err


def test_eval_adds_the_preference_column_from_the_same_reward(debug_gen, base_dir, tmp_path, capsys, monkeypatch):
    from musicrl.cli import main
    from musicrl.commands import eval as eval_command

    # the shipped scorers expect 16 kHz and would be skipped for the 8 kHz debug model anyway
    monkeypatch.setattr(eval_command, "load_scorer_models", lambda args, sample_rate: {})

    rm_dir = RewardModel.from_generator(debug_gen, "debug").save(tmp_path / "rm")
    prompts = tmp_path / "p.txt"
    prompts.write_text("calm piano\nfast rock\n")
    args = ["eval", "--models", "dbg=debug", "--cfg", "1", "--prompts", str(prompts), "--samples-per-prompt", "2",
            "--duration", "0.2", "--reference", "none", "--reward-model", str(rm_dir), "--out", str(tmp_path / "e")]
    assert main(args) == 0
    rows = [json.loads(line) for line in (tmp_path / "e" / "results.jsonl").read_text().splitlines()]
    assert all(math.isfinite(r["preference"]) for r in rows)
    summary = json.loads((tmp_path / "e" / "summary.jsonl").read_text().splitlines()[0])
    assert summary["preference"] == pytest.approx(np.mean([r["preference"] for r in rows]))
    assert "| preference |" in (tmp_path / "e" / "report.md").read_text()
    # the column is the RL reward itself: the same codes scored through PreferenceReward give the same numbers
    from models.sampling import SamplingParams
    from musicrl.rewards import load_preference_reward

    out = debug_gen.generate(["calm piano"], 0.2, SamplingParams(cfg=1.0), seeds=[0, 1], samples_per_prompt=2)
    again = load_preference_reward(rm_dir)(["calm piano"] * 2, out.audio[:, 0], out.codes)
    assert again.tolist() == pytest.approx([r["preference"] for r in rows[:2]], abs=1e-6)

    other = RewardModel.from_generator(debug_gen, str(base_dir))  # trained on the spectral-codec base
    other.cfg.base_hash = ""
    other.save(tmp_path / "rm2")
    capsys.readouterr()
    assert main([*args[:-4], "--reward-model", str(tmp_path / "rm2"), "--out", str(tmp_path / "e2")]) == 2
    assert "another codec" in capsys.readouterr().err


def test_an_interrupted_run_resumes_exactly_across_phase_boundaries(warm_run, prefs_root, base_dir, tmp_path,
                                                                    monkeypatch):
    """24 steps: probe 0-11, member 0 12-17, member 1 18-23; state saved every 6 steps. Killed during
    step 14 (resumes at the probe's end) and during step 20 (resumes at member 0's end), the run ends
    with the weights of the uninterrupted one."""
    _, full = warm_run
    out = tmp_path / "run"
    cfg = lambda: tiny_cfg(prefs_root, out, base_dir, "num_models=2", "save_every=6")  # noqa: E731
    real_step = recipe.step
    for kill_at in (13, 19):
        def dying(state, batch, kill_at=kill_at):
            if state.step == kill_at:
                raise KeyboardInterrupt
            return real_step(state, batch)

        monkeypatch.setattr(recipe, "step", dying)
        with pytest.raises(KeyboardInterrupt):
            recipe.main(cfg())
    monkeypatch.setattr(recipe, "step", real_step)
    summary = recipe.main(cfg())
    assert summary["step"] == 24
    for d in ("probe", "members/0", "members/1", "model"):
        a, b = RewardModel.load(full / d).state_dict(), RewardModel.load(out / d).state_dict()
        for key in a:
            torch.testing.assert_close(a[key], b[key], rtol=0, atol=0, msg=f"{d}: {key}")


def test_warm_members_are_diversified_from_one_seed():
    """Member LRs lie in lr × [0.5, 2], dropouts in [0, 0.2], seeds differ; Baklava inits cycle; one
    member uses the configured LR and the LM's own dropout."""
    cfg = load_config(recipe.Config, None, ["num_models=5", "lr=1e-4", "inits=[a, b]"])
    members = recipe.member_settings(cfg)
    assert [m["init"] for m in members] == ["a", "b", "a", "b", "a"]
    assert all(0.5e-4 <= m["lr"] <= 2e-4 and 0 <= m["dropout"] <= 0.2 for m in members)
    assert len({m["seed"] for m in members}) == 5 and len({m["lr"] for m in members}) == 5
    assert members == recipe.member_settings(cfg)  # drawn from the seed alone
    single = recipe.member_settings(load_config(recipe.Config, None, ["lr=1e-4"]))
    assert single == [{"index": 0, "seed": 1, "lr": 1e-4, "dropout": None, "init": "default"}]
