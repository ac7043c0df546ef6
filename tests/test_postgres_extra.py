"""PostgreSQL is optional: its driver (psycopg) is the extra ``musicrl[postgres]``. Without it everything else
works, and a PostgreSQL URL fails with one line saying what to install."""

import subprocess
import sys

from app.store import open_store
from musicrl.cli import main


def test_missing_driver_is_one_line_naming_the_extra(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "psycopg", None)  # `import psycopg` now raises ImportError
    argv = ["prefs", "export", "--db", "postgresql://u:p@127.0.0.1:1/db", "--data-dir", str(tmp_path),
            "--out", str(tmp_path / "o.jsonl")]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert err == ("musicrl prefs: error: PostgreSQL needs its driver (psycopg is not installed): "
                   "pip install 'musicrl[postgres]'")
    with open_store(None, tmp_path / "data") as store:  # the SQLite default does not need it
        assert store.vote_count() == 0


def test_nothing_imports_psycopg_up_front():
    code = ("import sys; sys.modules['psycopg'] = None; "
            "import app.main, app.services, app.store, app.transfer, musicrl.cli; musicrl.cli.build_parser()")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=300)
