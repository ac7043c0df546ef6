import json

import torch

from models.checkpoint import load_checkpoint, save_checkpoint
from models.debug import debug_generator, seeded_lm
from musicrl.cli import main


def _variant(lm_seed):
    """The debug stack (same conditioner and codec) with LM weights drawn from another seed."""
    gen = debug_generator(seed=0)
    gen.lm = seeded_lm(gen.lm.cfg, lm_seed)
    return gen


def _ckpts(tmp_path):
    return save_checkpoint(_variant(0), tmp_path / "a"), save_checkpoint(_variant(1), tmp_path / "b")


def test_lerp_at_zero_half_one(tmp_path):
    a, b = _ckpts(tmp_path)
    wa, wb = load_checkpoint(a).lm.state_dict(), load_checkpoint(b).lm.state_dict()
    for lam in (0.0, 0.5, 1.0):
        out = tmp_path / f"m{lam}"
        assert main(["merge", str(a), str(b), "--lam", str(lam), "--out", str(out)]) == 0
        merged = load_checkpoint(out)
        for key, value in merged.lm.state_dict().items():
            torch.testing.assert_close(value, (1 - lam) * wa[key] + lam * wb[key])
        lineage = json.loads((out / "musicrl.json").read_text())["lineage"]
        assert lineage["recipe"] == "merge" and lineage["merge"]["lam"] == lam and len(lineage["parents"]) == 2


def test_slerp_with_init_and_liti(tmp_path):
    a, b = _ckpts(tmp_path)
    init = save_checkpoint(_variant(2), tmp_path / "init")
    out = tmp_path / "s"
    assert (
        main(
            [
                "merge",
                str(a),
                str(b),
                "--lam",
                "0.5",
                "--method",
                "slerp",
                "--init",
                str(init),
                "--eta",
                "0",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    wi = load_checkpoint(init).lm.state_dict()
    for key, value in load_checkpoint(out).lm.state_dict().items():  # eta = 0: all the way back to init
        torch.testing.assert_close(value, wi[key])


def test_bad_merges_exit_2(tmp_path, capsys):
    a, b = _ckpts(tmp_path)
    assert main(["merge", str(a), str(b), "--lam", "1.5", "--out", str(tmp_path / "x")]) == 2
    assert main(["merge", str(a), str(b), "--lam", "0.5", "--method", "slerp", "--out", str(tmp_path / "x")]) == 2
    assert "needs the initial checkpoint" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()
