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


def test_eval_labels_merges_by_lambda_and_combines_runs_into_one_report(tmp_path, capsys):
    from models.checkpoint import save_checkpoint
    from models.debug import debug_generator, seeded_lm

    a, b = debug_generator(seed=0), debug_generator(seed=0)
    b.lm = seeded_lm(b.lm.cfg, 1)
    pa, pb = save_checkpoint(a, tmp_path / "a"), save_checkpoint(b, tmp_path / "b")
    assert main(["merge", str(pa), str(pb), "--lam", "0.5", "--out", str(tmp_path / "m")]) == 0
    from models.debug import tiny_embedder_config
    from models.embedder import TextAudioEmbedder

    # an untrained 8 kHz embedder: adherence and diversity get computed for the 8 kHz debug model
    embedder = TextAudioEmbedder(tiny_embedder_config(sample_rate=8000)).save(tmp_path / "emb")
    prompts = tmp_path / "p.txt"
    prompts.write_text("fast rock\ncalm piano\n")
    common = ["--prompts", str(prompts), "--samples-per-prompt", "2", "--duration", "0.2", "--reference", "none"]
    common += ["--embedder", str(embedder)]
    assert main(["eval", "--models", "base=debug", "--cfg", "1", "3", *common, "--out", str(tmp_path / "e1")]) == 0
    assert (
        main(["eval", "--models", f"half={tmp_path / 'm'}", "--cfg", "1", *common, "--out", str(tmp_path / "e2")]) == 0
    )
    half = json.loads((tmp_path / "e2" / "summary.jsonl").read_text())
    assert half["lam"] == 0.5 and len(half["per_prompt"]["adherence"]) == 2
    out = tmp_path / "both"
    args = ["eval", "--from", str(tmp_path / "e1"), str(tmp_path / "e2"), "--out", str(out)]
    assert (
        main(
            [*args, "--curve", "CFG=base", "--curve", "merged=half", "--ratio", "half@1/base@3", "--gap", "merged/CFG"]
        )
        == 0
    )
    report = (out / "report.md").read_text()
    assert "| half@1 / base@3 |" in report and (out / "pareto.png").stat().st_size > 0
    assert "| half@1 (λ=0.5) | CFG |" in report
    assert main([*args, "--curve", "CFG=base", "--zoom", "CFG"]) == 0 and (out / "pareto_zoom.png").stat().st_size > 0
    assert main([*args, "--zoom", "nope"]) == 2
    assert len((out / "summary.jsonl").read_text().splitlines()) == 3
    capsys.readouterr()
    assert main([*args, "--ratio", "half@3/base@3"]) == 2
    assert "no evaluated setting 'half@3'" in capsys.readouterr().err
    assert main(["eval", "--from", str(tmp_path / "nothing"), "--out", str(out)]) == 2
    assert main([*args, "--curve", "no-equals-sign"]) == 2
    assert main([*args, "--curve", "CFG=base", "--gap", "nope/CFG"]) == 2
