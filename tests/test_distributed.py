"""Recipes under torchrun: 2 CPU processes (gloo) give the parameters of 1 process with the same global
batch, and a 2-process run resumes. Started as ``python -m torch.distributed.run --standalone``."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from musicrl.config import load_config
from musicrl.distributed import Dist
from musicrl.lm_data import write_token_data
from musicrl.recipes import cfg_distill
from musicrl.recipes import lm as lm_recipe

ROOT = Path(__file__).resolve().parent.parent


def torchrun(nproc: int, args: list[str], timeout: float = 240) -> str:
    """``musicrl train ...`` in ``nproc`` processes; returns the combined output (fails on a non-zero exit).
    A run still going after ``timeout`` s fails with every worker's stacks (``musicrl train`` dumps them on SIGUSR1)."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}"]
    cmd += ["-m", "musicrl.cli", "train", *args]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        workers = children(proc.pid)  # torchrun starts each worker in a session of its own
        for pid in workers:
            os.kill(pid, signal.SIGUSR1)
        time.sleep(3)
        for pid in [*workers, proc.pid]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        stdout, stderr = proc.communicate()
        pytest.fail(f"torchrun still running after {timeout:.0f} s; the workers' stacks:\n{stderr[-12000:]}")
    assert proc.returncode == 0, stdout[-3000:] + stderr[-3000:]
    return stdout + stderr


def children(pid: int) -> list[int]:
    """The processes whose parent is ``pid`` (from /proc)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, IndexError, ValueError):
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(stat.parent.name))
    return found


def weights(run: Path, name: str) -> dict[str, torch.Tensor]:
    prefix = f"module/{name}/"
    tensors = load_file(str(run / "state" / "tensors.safetensors"))
    return {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}


def assert_same_weights(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-4, atol=2e-5, msg=k)


@pytest.fixture(scope="module")
def tokens(tmp_path_factory):
    g = torch.Generator().manual_seed(0)
    path = tmp_path_factory.mktemp("tokens")
    states = [torch.randn(3 + i % 3, 384, generator=g) for i in range(10)]
    meta = {"ids": [f"c{i}" for i in range(10)], "splits": ["train"] * 8 + ["valid"] * 2}
    meta.update(captions=[f"clip {i}" for i in range(10)], attributes=[{}] * 10)
    write_token_data(path, torch.randint(0, 16, (10, 4, 12), generator=g), states, meta)
    return path


LM = ["lm.dim=32", "lm.num_layers=1", "lm.num_heads=2", "lm.ffn_dim=64", "lm.cardinality=16", "lm.max_positions=64"]
LM += ["lm.dropout=0.0", "batch_size=4", "lr=3e-3", "warmup=1", "eval_every=100", "eval_batches=1", "log_every=1"]


def test_lm_two_processes_equal_one_and_resume(tokens, tmp_path):
    one, two = tmp_path / "one", tmp_path / "two"
    lm_recipe.main(load_config(lm_recipe.Config, None, [f"data={tokens}", f"out={one}", "steps=3", *LM]))
    out = torchrun(2, ["lm", f"data={tokens}", f"out={two}", "steps=3", "save_every=3", *LM])
    assert_same_weights(weights(one, "lm"), weights(two, "lm"))
    state = json.loads((two / "state" / "state.json").read_text())
    assert state["kind"] == "train-state" and state["world"] == 2  # both ranks' RNG kept
    one_log = [json.loads(x) for x in (one / "log.jsonl").read_text().splitlines() if '"loss"' in x]
    two_log = [json.loads(x) for x in (two / "log.jsonl").read_text().splitlines() if '"loss"' in x]
    assert [r["step"] for r in two_log] == [1, 2, 3]  # rank 0 alone writes the log
    for a, b in zip(one_log, two_log, strict=True):  # the logged loss is the global batch's
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-5)
        assert (a["rank_rows"], b["rank_rows"]) == (4, 2)  # each rank trained on its half
    # resume: both ranks restore the state and go on; the same 5 steps as one uninterrupted 1-process run
    out = torchrun(2, ["lm", f"data={tokens}", f"out={two}", "steps=5", *LM])
    assert "resumed at step 3" in out
    steps = [json.loads(x)["step"] for x in (two / "log.jsonl").read_text().splitlines() if '"loss"' in x]
    assert steps == [1, 2, 3, 4, 5]
    lm_recipe.main(load_config(lm_recipe.Config, None, [f"data={tokens}", f"out={one}", "steps=5", *LM]))
    assert_same_weights(weights(one, "lm"), weights(two, "lm"))


def test_cfg_distill_two_processes_sample_their_own_share_and_equal_one(tmp_path):
    corpus = tmp_path / "c"
    corpus.mkdir()
    captions = ["calm ambient piano", "fast techno with drums", "sad jazz trumpet", "happy folk guitar"]
    rows = [{"id": f"c{i}", "path": f"a/c{i}.wav", "caption": c, "split": "train"} for i, c in enumerate(captions)]
    (corpus / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    args = ["model=debug", f"corpus={corpus}", "steps=2", "prompts_per_step=2", "samples_per_prompt=2"]
    args += ["duration=0.2", "lr=3e-3", "log_every=1", "seed=3"]
    cfg_distill.main(load_config(cfg_distill.Config, None, [*args, f"out={tmp_path / 'one'}"]))
    torchrun(2, ["cfg-distill", *args, f"out={tmp_path / 'two'}"])
    assert_same_weights(weights(tmp_path / "one", "lm"), weights(tmp_path / "two", "lm"))
    logs = [[json.loads(x) for x in (tmp_path / d / "log.jsonl").read_text().splitlines()] for d in ("one", "two")]
    assert [r["rank_rows"] for r in logs[0]] == [4, 4] and [r["rank_rows"] for r in logs[1]] == [2, 2]
    assert [r["distill"] for r in logs[0]] == pytest.approx([r["distill"] for r in logs[1]], rel=1e-5)
    assert (tmp_path / "two" / "model" / "musicrl.json").is_file()


def test_shards_are_contiguous_and_must_divide():
    """Rank r of W takes items [r·n/W, (r+1)·n/W): prompt-major rows keep a prompt's G samples together."""
    rows = list(range(8))
    assert [Dist(rank=r, world=2).shard(rows) for r in (0, 1)] == [[0, 1, 2, 3], [4, 5, 6, 7]]
    assert Dist().shard(rows) == rows
    with pytest.raises(Exception, match="divide"):
        Dist(rank=0, world=3).shard(rows, "batch_size")


def test_a_training_process_prints_its_stacks_on_sigusr1_and_goes_on():
    """``kill -USR1 PID`` on a run that seems stuck (``musicrl train`` sets it up): every thread's stack on
    stderr, and the run continues."""
    code = ("import time\nfrom musicrl.commands.train import dump_stacks_on_sigusr1\n"
            "dump_stacks_on_sigusr1()\nprint('started', flush=True)\n"
            "def waiting_for_a_peer():\n    time.sleep(4)\n"
            "waiting_for_a_peer()\nprint('went on', flush=True)\n")
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.stdout.readline().strip() == "started"
    time.sleep(0.5)
    os.kill(proc.pid, signal.SIGUSR1)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 0 and "went on" in stdout
    assert "most recent call first" in stderr and "waiting_for_a_peer" in stderr
