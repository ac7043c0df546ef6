"""Steerable models on the command line: ``musicrl soup``, ``generate --weights``, ``eval --weights
--hypervolume``."""

from __future__ import annotations

import json

import pytest
import torch

from models.checkpoint import save_checkpoint
from models.debug import debug_generator, seeded_lm, tiny_embedder_config
from models.embedder import TextAudioEmbedder
from models.steerable import load_steerable
from musicrl.cli import main


@pytest.fixture(scope="module")
def members(tmp_path_factory):
    """Two debug finetunes of one init (same conditioner and codec, different LM weights)."""
    root = tmp_path_factory.mktemp("members")
    a, b = debug_generator(seed=0), debug_generator(seed=0)
    b.lm = seeded_lm(b.lm.cfg, 1)
    return save_checkpoint(a, root / "a"), save_checkpoint(b, root / "b")


@pytest.fixture(scope="module")
def soup(members, tmp_path_factory):
    out = tmp_path_factory.mktemp("soup") / "soup"
    assert main(["soup", f"adherence={members[0]}", f"quality={members[1]}", "--out", str(out)]) == 0
    return out


def test_soup_vertices_are_its_members(soup, members):
    from models.registry import load_generator

    gen, steer = load_steerable(soup)
    assert steer.objectives == ("adherence", "quality") and steer.scope == "all"
    for w, member in (({"adherence": 1.0}, members[0]), ({"quality": 1.0}, members[1])):
        lm = steer.materialise(w)
        for key, value in load_generator(member).lm.state_dict().items():
            assert torch.allclose(lm.state_dict()[key], value), key


@pytest.mark.parametrize(("argv", "needle"), [
    (["adherence=x"], "two or more"),
    (["adherence", "quality=y"], "OBJECTIVE=DIR"),
    (["taste=x", "quality=y"], "unknown objective"),
    (["adherence=x", "adherence=y"], "twice"),
])
def test_soup_refuses_bad_members_and_writes_nothing(tmp_path, capsys, argv, needle):
    assert main(["soup", *argv, "--out", str(tmp_path / "s")]) == 2
    err = capsys.readouterr().err
    assert needle in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "s").exists()


def _codes(out_dir):
    (meta,) = [json.loads(p.read_text()) for p in out_dir.glob("*.json")]
    return meta


def test_generate_with_weights_steers_and_reproduces(soup, tmp_path):
    def run(weights, name):
        argv = ["generate", "calm piano", "--model", str(soup), "--duration", "0.2", "--seed", "3", "--save-codes",
                "--weights", weights, "--out", str(tmp_path / name)]
        assert main(argv) == 0
        meta = _codes(tmp_path / name)
        return meta, (tmp_path / name / f"{meta['id']}.npy").read_bytes()

    a_meta, a = run("adherence=1", "a")
    b_meta, b = run("quality=1", "b")
    c_meta, c = run("adherence=2,quality=0", "c")  # normalised: the same w as "adherence=1"
    assert a_meta["weights"] == {"adherence": 1.0, "quality": 0.0} and b_meta["weights"]["quality"] == 1.0
    assert a != b and a == c and a_meta["checkpoint_hash"] == c_meta["checkpoint_hash"] != b_meta["checkpoint_hash"]


@pytest.mark.parametrize(("model", "weights", "needle"), [
    ("debug", "adherence=1", "not"),
    (None, "taste=1", "unknown reward"),
    (None, "adherence=-1", ">= 0"),
    (None, "diversity=1", "unknown objective"),
])
def test_generate_refuses_bad_weights_with_one_line(soup, tmp_path, capsys, model, weights, needle):
    argv = ["generate", "calm", "--model", model or str(soup), "--duration", "0.2", "--weights", weights,
            "--out", str(tmp_path / "o")]
    assert main(argv) == 2
    err = [x for x in capsys.readouterr().err.splitlines() if x.strip() and "Loading weights" not in x]  # progress
    assert len(err) == 1 and needle in err[0], err
    assert not (tmp_path / "o").exists()


def test_eval_weights_and_hypervolume(soup, tmp_path):
    emb = TextAudioEmbedder(tiny_embedder_config(sample_rate=8000)).save(tmp_path / "emb")
    prompts = tmp_path / "p.txt"
    prompts.write_text("calm piano\nfast rock\nsad violin\n")
    out = tmp_path / "eval"
    argv = ["eval", "--models", f"soups={soup}", "dbg=debug", "--cfg", "1", "--prompts", str(prompts),
            "--samples-per-prompt", "2", "--duration", "0.2", "--reference", "none", "--embedder", str(emb),
            "--weights", "adherence=1", "adherence=0.5,quality=0.5", "quality=1",
            "--hypervolume", "adherence,diversity", "--out", str(out)]
    assert main(argv) == 0
    summaries = [json.loads(line) for line in (out / "summary.jsonl").read_text().splitlines()]
    labels = [s["model"] for s in summaries]
    assert labels == ["soups w1:0", "soups w0.5:0.5", "soups w0:1", "dbg"]
    assert summaries[1]["weights"] == {"adherence": 0.5, "quality": 0.5} and summaries[1]["steered"] == "soups"
    report = (out / "report.md").read_text()
    assert "| soups | 3 |" in report and "| dbg | 1 |" in report and "soups − dbg" in report
    assert (out / "front.png").is_file()
    # the soup's vertices are its members: w = (1, 0) scores like member a evaluated alone
    assert summaries[0]["adherence"] != summaries[2]["adherence"]


def test_eval_weights_without_a_steerable_model_is_refused(tmp_path, capsys):
    prompts = tmp_path / "p.txt"
    prompts.write_text("calm piano\n")
    argv = ["eval", "--models", "debug", "--weights", "adherence=1", "--prompts", str(prompts), "--reference", "none",
            "--out", str(tmp_path / "o")]
    assert main(argv) == 2
    assert "steerable" in capsys.readouterr().err


def test_eval_kl_reference_is_zero_for_the_reference_itself(members, tmp_path):
    prompts = tmp_path / "p.txt"
    prompts.write_text("calm piano\nfast rock\n")
    out = tmp_path / "eval"
    argv = ["eval", "--models", f"a={members[0]}", f"b={members[1]}", "--cfg", "1", "--prompts", str(prompts),
            "--samples-per-prompt", "1", "--duration", "0.2", "--reference", "none", "--kl-reference",
            str(members[0]), "--out", str(out)]
    assert main(argv) == 0
    a, b = [json.loads(line) for line in (out / "summary.jsonl").read_text().splitlines()]
    assert a["kl"] == pytest.approx(0.0, abs=1e-4) and b["kl"] > 0.01 and b["kl_ci"][0] > 0
