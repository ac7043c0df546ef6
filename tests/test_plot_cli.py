import json

import pytest

from evaluation.plots import moving_average
from musicrl.cli import main


def test_moving_average_by_hand():
    assert moving_average([1.0, 2.0, 3.0, 4.0], 2) == [1.0, 1.5, 2.5, 3.5]
    assert moving_average([2.0, 4.0], 5) == [2.0, 3.0]


def _run(tmp_path, name, rows):
    d = tmp_path / name
    d.mkdir()
    (d / "log.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return d


def test_plot_two_runs(tmp_path):
    a = _run(tmp_path, "a", [{"step": s, "distill": 1 / s} for s in range(1, 20)])
    b = _run(tmp_path, "b", [{"step": s, "distill": 2 / s, "diversity": 0.1 * s} for s in range(1, 20)])
    out = tmp_path / "fig" / "curves.png"
    assert (
        main(
            [
                "plot",
                f"β=0={a}",
                str(b / "log.jsonl"),
                "--keys",
                "distill",
                "diversity",
                "--smooth",
                "5",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not list(out.parent.glob("*.tmp.png"))


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--keys", "nope"], "no run logged 'nope'"),
        (["--keys", "distill", "--smooth", "0"], "--smooth must be >= 1"),
    ],
)
def test_plot_bad_input_exit_2(tmp_path, capsys, extra, message):
    a = _run(tmp_path, "a", [{"step": 1, "distill": 1.0}])
    assert main(["plot", str(a), *extra, "--out", str(tmp_path / "x.png")]) == 2
    assert message in capsys.readouterr().err
    assert main(["plot", str(tmp_path / "missing"), "--keys", "distill", "--out", str(tmp_path / "x.png")]) == 2
    assert not (tmp_path / "x.png").exists()


def test_run_labels_may_contain_equals(tmp_path):
    from musicrl.commands.plot import read_log

    a = _run(tmp_path, "a", [{"step": 1, "distill": 1.0}])
    assert read_log(f"β=0={a}") == ("β=0", [{"step": 1, "distill": 1.0}])
    assert read_log(str(a))[0] == "a" and read_log(str(a / "log.jsonl"))[0] == "log"


def test_plot_reward_against_kl(tmp_path, monkeypatch):
    from evaluation import plots

    val = tmp_path / "validation.jsonl"
    val.write_text("".join(json.dumps({"step": s, "val_kl": 0.1 * s, "val_reward": 0.5 + 0.01 * s}) + "\n"
                           for s in range(4)))
    drawn = {}

    def spy(runs, keys, path, smooth=1, x="step"):
        drawn.update(runs=runs, keys=keys, x=x)
        return real(runs, keys, path, smooth, x)

    real = plots.plot_training_logs
    monkeypatch.setattr(plots, "plot_training_logs", spy)
    out = tmp_path / "rk.png"
    assert main(["plot", f"loo={val}", "--x", "val_kl", "--keys", "val_reward", "--out", str(out)]) == 0
    assert drawn["x"] == "val_kl" and out.read_bytes()[:4] == b"\x89PNG"
    assert main(["plot", f"loo={val}", "--x", "kl", "--keys", "val_reward", "--out", str(out)]) == 2
