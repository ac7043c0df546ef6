"""``musicrl generate --continue FILE`` and long form on the command line (the debug model: 8 kHz, 50 Hz)."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
import soundfile as sf

from models.long_form import SPLICE_FADE
from musicrl.cli import main


def _clip(path, seconds=0.3, rate=44100, channels=2, fmt=None):
    t = np.arange(int(seconds * rate)) / rate
    wav = 0.4 * np.sin(2 * np.pi * 330 * t)
    sf.write(path, np.stack([wav, 0.5 * wav][:channels], axis=1), rate, format=fmt)
    return path


def _run(tmp_path, *extra, out="out"):
    return main(["generate", "calm piano", "--model", "debug", "--out", str(tmp_path / out), *extra])


@pytest.mark.parametrize("suffix", ["wav", "flac", "ogg"])
def test_continue_writes_the_prompt_verbatim_and_its_codes(tmp_path, debug_gen, suffix):
    """The WAV starts with the prompt's own samples (mono, resampled to 8 kHz; 16-bit PCM either way) up to
    the crossfade; the codes start with the prompt's codes; the sidecar names the prompt file."""
    src = _clip(tmp_path / f"prompt.{suffix}")
    assert _run(tmp_path, "--continue", str(src), "--duration", "0.8", "--save-codes", "--num-samples", "2") == 0
    wav_in, rate = sf.read(src, dtype="float32", always_2d=True)
    prompt = debug_gen.prompt_audio(wav_in, rate)[0].numpy()
    want_codes = debug_gen.encode_audio(wav_in, rate).numpy()
    metas = [json.loads(p.read_text()) for p in sorted((tmp_path / "out").glob("*.json"))]
    assert len(metas) == 2
    for meta in metas:
        cont = meta["continuation"]
        assert cont["prompt_file"] == src.name and cont["prompt_frames"] == want_codes.shape[1]
        assert cont["prompt_sha256"] == hashlib.sha256(src.read_bytes()).hexdigest()
        assert cont["prompt_seconds"] == pytest.approx(len(prompt) / 8000, abs=1e-4)
        assert meta["duration"] == 0.8 and meta["codes_shape"] == [4, 40] and "long_form" not in meta
        out, out_rate = sf.read(tmp_path / "out" / f"{meta['id']}.wav", dtype="float32")
        verbatim = len(prompt) - round(SPLICE_FADE * 8000)
        assert out_rate == 8000 and len(out) == 40 * 160
        np.testing.assert_allclose(out[:verbatim], np.clip(prompt[:verbatim], -1, 1), atol=1.5 / 32768)
        codes = np.load(tmp_path / "out" / f"{meta['id']}.npy")
        np.testing.assert_array_equal(codes[:, : want_codes.shape[1]], want_codes)
    assert metas[0]["seed"] != metas[1]["seed"]


def test_long_form_on_the_command_line(tmp_path):
    """10.5 s with the debug model (10 s windows), stride 6 s: windows [0, 500) and [200, 525)."""
    assert _run(tmp_path, "--duration", "10.5", "--extend-stride", "6", "--cfg", "1", "--save-codes") == 0
    meta = json.loads(next((tmp_path / "out").glob("*.json")).read_text())
    assert meta["codes_shape"] == [4, 525]
    assert meta["long_form"] == {"window_s": 10.0, "stride_s": 6.0, "context_s": 4.0, "windows": 2}


def _bad_files(tmp_path):
    (tmp_path / "empty.wav").write_bytes(b"")
    (tmp_path / "text.wav").write_text("this is not audio\n" * 10)
    sf.write(tmp_path / "silent0.wav", np.zeros((0, 1)), 8000)
    _clip(tmp_path / "long.wav", seconds=10.5, rate=8000, channels=1)
    return [
        (tmp_path / "missing.wav", "no such file"),
        (tmp_path / "empty.wav", "is empty"),
        (tmp_path / "text.wav", "not audio"),
        (tmp_path / "silent0.wav", "no samples"),
        (tmp_path / "long.wav", "at most 9.98 s"),
        (tmp_path, "no such file"),
    ]


def test_bad_prompt_files_exit_2_with_one_line(tmp_path, capsys):
    for path, needle in _bad_files(tmp_path):
        out = tmp_path / "o"
        assert main(["generate", "x", "--model", "debug", "--continue", str(path), "--out", str(out)]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and needle in err[0], (path, err)
        assert not out.exists()
    _clip(tmp_path / "ok.wav", seconds=0.5)
    for extra, needle in [(["--duration", "0.4"], "shorter than the requested duration"),
                          (["--best-of", "2"], "does not combine"),
                          (["--duration", "20", "--extend-stride", "10"], "extend stride")]:
        argv = ["generate", "x", "--model", "debug", "--continue", str(tmp_path / "ok.wav"), *extra]
        assert main([*argv, "--out", str(tmp_path / "o")]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and needle in err[0], err
