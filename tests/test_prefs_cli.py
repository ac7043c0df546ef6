"""``musicrl prefs export|import``: TRL-layout JSONL out of one store and into another; errors exit 2."""

from __future__ import annotations

import io
import json
import os
import uuid
import wave
from datetime import timedelta

import pytest

from app.store import open_store
from musicrl.cli import main

POSTGRES_URL = os.environ.get("MUSICRL_TEST_POSTGRES_URL")


def wav(tag: int) -> bytes:
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(tag.to_bytes(2, "little") * 400)
    return buffer.getvalue()


@pytest.fixture
def source(tmp_path):
    """A store with four votes: a, b, tie, both_bad."""
    data = tmp_path / "source"
    with open_store(None, data) as store:
        clips = [store.add_clip("calm piano", m, f"ck-{m}", {"cfg": 3.0}, i, wav(i), 8000, 0.05)
                 for i, m in enumerate(("base", "rl", "merged"))]
        for (x, y), choice in [((0, 1), "a"), ((1, 2), "b"), ((0, 2), "tie"), ((2, 1), "both_bad")]:
            issued = store.issue_pair(clips[x].id, clips[y].id, "s")
            store.record_vote(issued.token, "s", choice, "rater-1", 0.05, 0.05, f"vote {choice}",
                              now=issued.pair.issued_at + timedelta(seconds=9))
    return data


def test_export_writes_trl_rows_and_import_round_trips(source, tmp_path, capsys):
    out = tmp_path / "prefs.jsonl"
    assert main(["prefs", "export", "--data-dir", str(source), "--format", "trl", "--out", str(out)]) == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["outcome"] for r in rows] == ["a", "b", "tie", "both_bad"]
    assert {"prompt", "chosen", "rejected", "chosen_audio", "chosen_model_id", "rater_id", "created_at"} <= set(rows[0])
    assert rows[1]["chosen_model_id"] == "merged" and rows[1]["rejected_model_id"] == "rl"
    assert "exported 4 preference(s)" in capsys.readouterr().err

    decisive = tmp_path / "decisive.jsonl"
    db = f"sqlite:///{source / 'musicrl.sqlite3'}"  # the same store, named by URL
    assert main(["prefs", "export", "--db", db, "--data-dir", str(source), "--out", str(decisive),
                 "--exclude-ties"]) == 0
    assert [json.loads(line)["outcome"] for line in decisive.read_text().splitlines()] == ["a", "b"]

    assert rows[0]["chosen_audio"].startswith("audio/") and str(source) not in out.read_text()

    target = tmp_path / "target"
    args = ["prefs", "import", "--db", str(target / "votes.db"), "--data-dir", str(target), "--in", str(out)]
    assert main([*args, "--audio-from", str(source)]) == 0
    assert "imported 4 preference(s); skipped 0" in capsys.readouterr().err
    assert main(args) == 0
    assert "imported 0 preference(s); skipped 4" in capsys.readouterr().err
    with open_store(f"sqlite:///{target / 'votes.db'}", target) as store:
        assert [b.outcome for b in store.battles()] == ["a", "b", "tie", "both_bad"]
        assert store.get_clip(rows[0]["chosen"]).audio_file.read_bytes() == wav(0)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["prefs", "export", "--db", "mysql://x/y", "--out", "{tmp}/o.jsonl"], "unsupported database URL"),
        (["prefs", "export", "--db", "postgresql+psycopg://u:p@127.0.0.1:1/db", "--out", "{tmp}/o.jsonl"],
         "cannot open the database"),
        (["prefs", "export", "--out", "{tmp}"], "is a directory"),
        (["prefs", "import", "--in", "{tmp}/missing.jsonl"], "is not a file"),
        (["prefs", "import", "--in", "{tmp}/bad.jsonl"], "bad.jsonl:2 is not JSON"),
        (["prefs", "import", "--in", "{tmp}/row.jsonl"], "preference row 1"),
        (["prefs", "import", "--in", "{tmp}/row.jsonl", "--audio-from", "{tmp}/nowhere"], "is not a directory"),
        (["prefs", "export", "--out", "{tmp}/o.jsonl", "--db", "{tmp}/none.sqlite3"], "there is no preference store"),
    ],
)
def test_errors_are_one_line_and_exit_2(tmp_path, capsys, argv, message):
    (tmp_path / "bad.jsonl").write_text('{"pair_id": "x"}\nnot json\n')
    (tmp_path / "row.jsonl").write_text('{"pair_id": "p", "outcome": "maybe"}\n')
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv] + ["--data-dir", str(tmp_path / "data")]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1 and err.startswith("musicrl prefs: error:")


@pytest.mark.skipif(not POSTGRES_URL, reason="MUSICRL_TEST_POSTGRES_URL is not set (CI sets it with .ci/postgres.sh)")
def test_import_into_and_export_from_postgresql(source, tmp_path):
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    out, back = tmp_path / "prefs.jsonl", tmp_path / "back.jsonl"
    assert main(["prefs", "export", "--data-dir", str(source), "--out", str(out)]) == 0
    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = create_engine(POSTGRES_URL)
    with admin.begin() as conn:
        conn.execute(text(f"CREATE SCHEMA {schema}"))
    try:
        url = make_url(POSTGRES_URL).update_query_dict({"options": f"-csearch_path={schema}"})
        db = url.render_as_string(hide_password=False)
        assert main(["prefs", "import", "--db", db, "--data-dir", str(tmp_path / "pg"), "--in", str(out),
                     "--audio-from", str(source)]) == 0
        assert main(["prefs", "export", "--db", db, "--data-dir", str(tmp_path / "pg"), "--out", str(back)]) == 0
        assert back.read_text() == out.read_text()
    finally:
        with admin.begin() as conn:
            conn.execute(text(f"DROP SCHEMA {schema} CASCADE"))
        admin.dispose()


def test_export_takes_one_kind_of_vote_and_counts_what_it_left_out(tmp_path, capsys):
    """People's votes by default; simulated ones only when asked, and how many were left out on stderr."""
    data = tmp_path / "mixed"
    with open_store(None, data) as store:
        clips = [store.add_clip("calm piano", m, f"ck-{m}", {}, i, wav(i), 8000, 0.05) for i, m in enumerate("xy")]
        for choice, rater, simulated in [("a", "r-1", False), ("b", "panel-1", True), ("tie", "panel-1", True)]:
            issued = store.issue_pair(clips[0].id, clips[1].id, "s")
            store.record_vote(issued.token, "s", choice, rater, 0.05, 0.05, now=issued.pair.issued_at
                              + timedelta(seconds=9), simulated=simulated)
        first = issued.pair.id  # panel-1's tie, repeated with the sides swapped: tie again agrees
        repeat = store.issue_pair(clips[1].id, clips[0].id, "s", repeat_of=first, swapped=True)
        store.record_vote(repeat.token, "s", "tie", "panel-1", 0.05, 0.05,
                          now=repeat.pair.issued_at + timedelta(seconds=9), simulated=True)
    out = tmp_path / "prefs.jsonl"
    export = ["prefs", "export", "--data-dir", str(data), "--out", str(out)]
    outcomes = lambda: [(r["outcome"], r["simulated"]) for r in map(json.loads, out.read_text().splitlines())]  # noqa: E731

    assert main(export) == 0
    assert outcomes() == [("a", False)]
    assert capsys.readouterr().err.splitlines() == [
        f"exported 1 preference(s) to {out} (people's votes)",
        "left out 3 simulated vote(s) (--votes simulated or --votes all exports them)"]
    assert main([*export, "--votes", "simulated", "--exclude-ties"]) == 0
    assert outcomes() == [("b", True)]
    assert "left out 1 people's vote(s)" in capsys.readouterr().err
    assert main([*export, "--votes", "all"]) == 0
    assert outcomes() == [("a", False), ("b", True), ("tie", True), ("tie", True)]
    assert "left out" not in capsys.readouterr().err
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert (rows[3]["repeat_of"], rows[3]["swapped"], rows[0]["repeat_of"]) == (first, True, None)

    assert main(["prefs", "consistency", "--data-dir", str(data)]) == 0
    printed = capsys.readouterr()
    summary = json.loads(printed.out)
    pooled = summary["simulated"]["pooled"]
    assert (pooled["agreements"], pooled["repeats"], pooled["rate"], pooled["ci_high"]) == (1, 1, 1.0, 1.0)
    assert summary["simulated"]["raters"][0]["rater_id"] == "panel-1"
    assert summary["people"]["pooled"]["repeats"] == 0 and summary["people"]["raters"] == []
    assert printed.err.strip() == ("people: 0/0 repeat(s) agreed over 0 rater(s); "
                                   "simulated: 1/1 repeat(s) agreed over 1 rater(s)")
    assert main(["prefs", "consistency", "--data-dir", str(data), "--out", str(tmp_path / "c.json")]) == 0
    assert json.loads((tmp_path / "c.json").read_text()) == summary
