"""models.audio_io.atomic_directory: a directory appears whole or not at all."""

import stat

import pytest

from models.audio_io import atomic_directory


def test_a_new_directory_replaces_the_old_one_readable_by_all(tmp_path):
    out = tmp_path / "sub" / "ckpt"
    with atomic_directory(out) as tmp:
        (tmp / "a.txt").write_text("one")
    assert (out / "a.txt").read_text() == "one"
    with atomic_directory(out) as tmp:
        (tmp / "b.txt").write_text("two")
    assert sorted(p.name for p in out.iterdir()) == ["b.txt"]  # replaced, not merged
    assert stat.S_IMODE(out.stat().st_mode) == 0o755 and stat.S_IMODE((out / "b.txt").stat().st_mode) == 0o644
    assert sorted(p.name for p in out.parent.iterdir()) == ["ckpt"]  # no temp or .old left behind


def test_an_error_leaves_the_old_directory_and_no_temp(tmp_path):
    out = tmp_path / "ckpt"
    with atomic_directory(out) as tmp:
        (tmp / "a.txt").write_text("one")
    with pytest.raises(RuntimeError), atomic_directory(out) as tmp:
        (tmp / "half.txt").write_text("half")
        raise RuntimeError("crash while writing")
    assert sorted(p.name for p in out.iterdir()) == ["a.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt"]
