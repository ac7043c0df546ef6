import json
import subprocess
import sys

import pytest

from models.checkpoint import save_checkpoint
from musicrl.cli import main


def _gen(tmp_path, *extra, out="out"):
    return main(
        ["generate", "upbeat techno", "--model", "debug", "--duration", "0.4", "--out", str(tmp_path / out), *extra]
    )


def test_writes_wav_json_and_codes(tmp_path):
    assert _gen(tmp_path, "--num-samples", "2", "--save-codes", "--seed", "4") == 0
    files = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert len(files) == 6 and sum(f.endswith(".wav") for f in files) == 2
    metas = [json.loads(p.read_text()) for p in sorted((tmp_path / "out").glob("*.json"))]
    assert sorted(m["seed"] for m in metas) == [4, 5]
    m = metas[0]
    assert m["prompt"] == "upbeat techno" and m["model"] == "debug" and m["codes_shape"] == [4, 20]
    assert m["duration"] == 0.4 and m["sample_rate"] == 8000
    for key in ("cfg", "temperature", "top_k", "top_p", "greedy", "checkpoint_hash"):
        assert key in m


def test_same_seed_is_byte_identical(tmp_path):
    assert _gen(tmp_path, "--seed", "3", "--save-codes", out="a") == 0
    assert _gen(tmp_path, "--seed", "3", "--save-codes", out="b") == 0
    a, b = sorted((tmp_path / "a").iterdir()), sorted((tmp_path / "b").iterdir())
    assert [p.name for p in a] == [p.name for p in b]
    assert all(x.read_bytes() == y.read_bytes() for x, y in zip(a, b, strict=True))
    assert _gen(tmp_path, "--seed", "4", out="c") == 0
    wav_a = next((tmp_path / "a").glob("*.wav")).read_bytes()
    assert next((tmp_path / "c").glob("*.wav")).read_bytes() != wav_a


BAD = [
    (["generate", "", "--model", "debug"], "empty"),
    (["generate", "   ", "--model", "debug"], "empty"),
    (["generate", "x" * 1001, "--model", "debug"], "maximum"),
    (["generate", "ok", "--model", "debug", "--duration", "0"], "duration"),
    (["generate", "ok", "--model", "debug", "--duration", "-2"], "duration"),
    (["generate", "ok", "--model", "debug", "--duration", "301"], "long-form maximum"),
    (["generate", "ok", "--model", "debug", "--cfg", "-1"], "cfg"),
    (["generate", "ok", "--model", "debug", "--temperature", "-0.5"], "temperature"),
    (["generate", "ok", "--model", "debug", "--top-k", "0"], "top-k"),
    (["generate", "ok", "--model", "debug", "--top-p", "0"], "top-p"),
    (["generate", "ok", "--model", "debug", "--top-p", "1.5"], "top-p"),
    (["generate", "ok", "--model", "debug", "--num-samples", "0"], "num-samples"),
    (["generate", "ok", "--model", "/no/such/dir"], "neither"),
]


@pytest.mark.parametrize("argv,needle", BAD)
def test_bad_input_exits_2_and_writes_nothing(tmp_path, capsys, argv, needle):
    out = tmp_path / "out"
    assert main([*argv, "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and needle in err[0], err
    assert not out.exists()


def test_malformed_and_pickle_model_dirs(tmp_path, capsys, debug_gen):
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "config.json").write_text("{not json")
    assert main(["generate", "ok", "--model", str(bad), "--out", str(tmp_path / "o")]) == 2
    ckpt = save_checkpoint(debug_gen, tmp_path / "ckpt")
    (ckpt / "lm.safetensors").rename(ckpt / "lm.pt")
    assert main(["generate", "ok", "--model", str(ckpt), "--out", str(tmp_path / "o")]) == 2
    assert "pickle" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_real_process_exit_code_and_single_line(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "musicrl.cli", "generate", " ", "--model", "debug", "--out", str(tmp_path / "o")],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip() == "musicrl generate: error: the prompt is empty"


def test_many_samples_go_batch_by_batch_with_the_same_seeds(tmp_path):
    """--batch-size bounds what is sampled at once; clip i still uses seed + i, so the codes do not depend on
    the batch size, and every clip is written."""
    def clips(name, *extra):
        assert _gen(tmp_path, "--num-samples", "5", "--save-codes", *extra, out=name) == 0
        metas = sorted((json.loads(p.read_text()) for p in (tmp_path / name).glob("*.json")), key=lambda m: m["index"])
        codes = [(tmp_path / name / f"{m['id']}.npy").read_bytes() for m in metas]
        return metas, codes

    one_batch, codes_one = clips("one")
    batches, codes_three = clips("three", "--batch-size", "2")
    assert [m["index"] for m in batches] == [0, 1, 2, 3, 4] and [m["seed"] for m in batches] == [0, 1, 2, 3, 4]
    assert codes_three == codes_one and [m["id"] for m in batches] == [m["id"] for m in one_batch]


@pytest.mark.parametrize(("extra", "needle"), [(["--num-samples", "100000"], "from 1 to 1000"),
                                               (["--batch-size", "0"], "--batch-size")])
def test_sample_count_is_bounded(tmp_path, capsys, extra, needle):
    assert _gen(tmp_path, *extra) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and needle in err[0]
    assert not (tmp_path / "out").exists()
