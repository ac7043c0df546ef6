import json

from musicrl.cli import main


def test_eval_debug_model_writes_results_summary_and_report(tmp_path):
    prompts = tmp_path / "p.jsonl"
    prompts.write_text('{"caption": "fast rock", "attributes": {"style": "rock"}}\n{"caption": "calm piano"}\n')
    out = tmp_path / "eval"
    rc = main(
        [
            "eval",
            "--models",
            "dbg=debug",
            "--cfg",
            "1",
            "3",
            "--prompts",
            str(prompts),
            "--samples-per-prompt",
            "2",
            "--duration",
            "0.2",
            "--reference",
            "none",
            "--out",
            str(out),
            "--save-audio",
        ]
    )
    assert rc == 0
    rows = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert len(rows) == 2 * 2 * 2 and {r["cfg"] for r in rows} == {1.0, 3.0}
    summaries = [json.loads(line) for line in (out / "summary.jsonl").read_text().splitlines()]
    assert [s["forward_passes_per_clip"] for s in summaries] == [13, 26]  # 10 frames + 3 delay steps, x2 with CFG
    assert "| dbg | 3 |" in (out / "report.md").read_text()
    assert len(list((out / "audio").glob("*.wav"))) == 8


def test_eval_bad_prompt_file(tmp_path, capsys):
    bad = tmp_path / "p.jsonl"
    bad.write_text("{not json\n")
    assert main(["eval", "--models", "debug", "--prompts", str(bad), "--out", str(tmp_path / "o")]) == 2
    assert "p.jsonl:1" in capsys.readouterr().err
