from musicrl.bench.cfg import run_cfg_bench
from musicrl.cli import main


def test_cfg_bench_reports_a_speedup_per_batch():
    rows = run_cfg_bench("debug", None, [1, 2], duration=0.1, cfg=3.0, threads=0, log=lambda *_: None)
    assert [r["batch"] for r in rows] == [1, 2]
    assert all(r["speedup"] > 0 and r["base_cfg_clips_per_s"] > 0 for r in rows)
    assert all(r["lm_speedup"] > 0 and 0 < r["decode_share"] < 1 for r in rows)


def test_rtf_bench_and_bad_input(capsys):
    assert main(["bench", "rtf", "--model", "debug", "--duration", "0.2", "--repeats", "1"]) == 0
    assert "real-time factor" in capsys.readouterr().out
    assert main(["bench", "cfg", "--model", "debug", "--batches", "0"]) == 2
    assert main(["bench", "sampler", "--sizes", "huge"]) == 2
