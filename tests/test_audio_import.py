"""``musicrl data import``: own audio -> token data (debug model: 8 kHz codec, seconds per test)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf
import torch

from models.debug import debug_generator
from models.errors import InputError
from musicrl import audio_import
from musicrl.audio_import import ImportConfig, cut_segments, import_audio, read_captions, read_mono, split_files
from musicrl.cli import main
from musicrl.lm_data import TokenData, check_data_model, model_identity

SR = 16000


def tone(freq: float, seconds: float, sr: int = SR, amp: float = 0.3) -> np.ndarray:
    return (amp * np.sin(2 * np.pi * freq * np.arange(int(seconds * sr)) / sr)).astype(np.float32)


@pytest.fixture(scope="module")
def gen():
    return debug_generator(seed=0)


@pytest.fixture
def folder(tmp_path):
    """6 good files (WAV mono/stereo, FLAC at 22.05 kHz, OGG, a subfolder), a corrupt one, a silent one, one
    without a caption, one whose caption holds an escape character, one shorter than a segment, an empty one."""
    src = tmp_path / "own"
    (src / "sub").mkdir(parents=True)
    sf.write(src / "a.wav", tone(220, 2.5), SR)
    sf.write(src / "b.wav", np.stack([tone(330, 2.2), tone(440, 2.2)], 1), SR)
    sf.write(src / "c.flac", tone(262, 3.1, 22050), 22050)
    sf.write(src / "d.ogg", tone(392, 1.4), SR)
    sf.write(src / "sub" / "e.wav", tone(523, 2.0), SR)
    sf.write(src / "f.wav", np.concatenate([tone(300, 1.0), np.zeros(SR, np.float32), tone(300, 1.0)]), SR)
    (src / "corrupt.wav").write_bytes(b"RIFF\x00\x00not audio at all")
    sf.write(src / "silent.wav", np.zeros(2 * SR, np.float32), SR)
    sf.write(src / "nocaption.wav", tone(600, 2.0), SR)
    sf.write(src / "escape.wav", tone(700, 2.0), SR)
    sf.write(src / "tiny.wav", tone(800, 0.5), SR)
    sf.write(src / "empty.wav", np.zeros(0, np.float32), SR)
    rows = [("a.wav", "calm piano, slow"), ("b.wav", "stereo rock guitar"), ("c.flac", "a folk tune in C major"),
            ("d.ogg", "short jazz riff"), ("sub/e.wav", "bright synth lead"), ("f.wav", "two notes and a gap"),
            ("corrupt.wav", "broken"), ("silent.wav", "nothing at all"), ("escape.wav", "red \x1b[31m text"),
            ("tiny.wav", "a blip"), ("empty.wav", "no samples")]
    captions = tmp_path / "captions.csv"
    captions.write_text("file,caption\n" + "".join(f'{f},"{c}"\n' for f, c in rows))
    return src, captions


def run_import(folder, out, gen, **kw) -> dict:
    src, captions = folder
    return import_audio(ImportConfig(src, captions, out, "debug", segment=1.0, **kw), gen=gen, progress=False)


def test_cut_segments_by_hand():
    """10 samples, segments of 4: [0:4] and [4:8] (samples 8..9 dropped); [4:8] silent at -60 dBFS."""
    wav = np.array([0.5] * 4 + [0.0] * 4 + [0.5] * 2, np.float32)
    assert cut_segments(wav, 4, -60.0) == ([0], 1)
    assert cut_segments(np.full(10, 0.5, np.float32), 4, -60.0) == ([0, 4], 0)
    assert cut_segments(np.full(3, 0.5, np.float32), 4, -60.0) == ([], 0)


def test_read_mono_mixes_down_and_resamples(tmp_path):
    sf.write(tmp_path / "s.flac", np.stack([tone(100, 1.0, 22050), -tone(100, 1.0, 22050)], 1), 22050)
    wav = read_mono(tmp_path / "s.flac", 8000)
    assert wav.shape == (8000,) and wav.dtype == np.float32 and np.abs(wav).max() < 1e-4  # L + R cancel
    sf.write(tmp_path / "t.wav", tone(100, 1.0, 22050), 22050)
    assert abs(float(np.sqrt(np.mean(read_mono(tmp_path / "t.wav", 8000) ** 2))) - 0.3 / np.sqrt(2)) < 5e-3


def test_split_files_by_hand():
    files = [f"f{i}.wav" for i in range(10)]
    split = split_files(files, 0.3, seed=1)
    assert sorted(split) == files and list(split.values()).count("valid") == 3
    assert split == split_files(list(reversed(files)), 0.3, seed=1)  # order of listing does not matter
    assert split != split_files(files, 0.3, seed=2)
    assert set(split_files(files, 0.0, 0).values()) == {"train"}
    assert list(split_files(["a", "b"], 0.01, 0).values()).count("valid") == 1  # at least one held out
    assert list(split_files(["a", "b"], 0.9, 0).values()).count("train") == 1  # at least one trained on


def test_captions_csv_and_jsonl(tmp_path):
    (tmp_path / "c.jsonl").write_text('{"file": "x.wav", "caption": "soft"}\n\n{"file": "y.mp3", "caption": "loud"}\n')
    assert read_captions(tmp_path / "c.jsonl") == {"x.wav": "soft", "y.mp3": "loud"}
    (tmp_path / "bad.csv").write_text("name,text\nx.wav,soft\n")
    with pytest.raises(InputError, match="file,caption"):
        read_captions(tmp_path / "bad.csv")


def test_import_skips_bad_files_splits_by_file_and_records_the_model(folder, tmp_path, gen):
    out = tmp_path / "tokens"
    info = run_import(folder, out, gen, valid_share=0.34, seed=3)
    skipped = {json.loads(x)["file"]: json.loads(x)["reason"] for x in (out / "skipped.jsonl").read_text().splitlines()}
    assert set(skipped) == {"corrupt.wav", "silent.wav", "nocaption.wav", "escape.wav", "tiny.wav", "empty.wav"}
    assert skipped["tiny.wav"].startswith("too short: 0.50 s") and skipped["empty.wav"].startswith("empty")
    assert skipped["corrupt.wav"].startswith("unreadable") and skipped["silent.wav"].startswith("silent")
    assert skipped["nocaption.wav"] == "no caption in the captions file"
    assert "control" in skipped["escape.wav"] and skipped["escape.wav"].startswith("caption")
    data = TokenData.load(out)
    # whole 1 s segments: a 2, b 2, c 3, d 1, e 2, f 2 of 3 (its middle second is silent)
    per_file = {}
    for i, split in zip(data.meta["ids"], data.meta["splits"], strict=True):
        per_file.setdefault(i.split("#")[0], set()).add(split)
    assert {f: len([i for i in data.meta["ids"] if i.startswith(f + "#")]) for f in per_file} == {
        "a.wav": 2, "b.wav": 2, "c.flac": 3, "d.ogg": 1, "sub/e.wav": 2, "f.wav": 2}
    assert [i for i in data.meta["ids"] if i.startswith("f.wav")] == ["f.wav#0", "f.wav#2"]
    assert all(len(s) == 1 for s in per_file.values())  # no file has segments in both splits
    valid = {f for f, s in per_file.items() if s == {"valid"}}
    assert valid and valid == set(info["valid_files"]) - set(skipped)
    assert data.codes.shape == (12, 4, round(gen.frame_rate)) and int(data.codes.max()) < 64
    assert data.meta["model"] == model_identity(gen) and data.meta["captions"][0] == "calm piano, slow"
    codes = gen.codec.encode(torch.from_numpy(read_mono(folder[0] / "a.wav", 8000)[:8000])[None, None])
    assert torch.equal(data.codes[0], codes[0])  # the model's own codec made the codes
    states = gen.encode_text(["calm piano, slow"])
    torch.testing.assert_close(data.text_states([0]).states[0], states.states[0][: states.mask[0].sum()],
                               atol=0.02, rtol=0.02)  # int8 storage
    assert not (out / "parts").exists()
    check_data_model(data.meta, gen)
    with pytest.raises(InputError, match="codec fingerprint differs"):
        check_data_model(data.meta, debug_generator(seed=1))


def test_interrupted_import_resumes_to_the_same_result(folder, tmp_path, gen, monkeypatch):
    whole, parted = tmp_path / "whole", tmp_path / "parted"
    run_import(folder, whole, gen)
    calls, real = [], audio_import.encode_file

    def stop_after_three(*args, **kw):
        if len(calls) == 3:
            raise KeyboardInterrupt
        calls.append(1)
        return real(*args, **kw)

    monkeypatch.setattr(audio_import, "encode_file", stop_after_three)
    with pytest.raises(KeyboardInterrupt):
        run_import(folder, parted, gen)
    assert len((parted / "progress.jsonl").read_text().splitlines()) == 3 and not (parted / "meta.json").exists()
    monkeypatch.setattr(audio_import, "encode_file", real)
    run_import(folder, parted, gen)
    a, b = TokenData.load(whole), TokenData.load(parted)
    assert torch.equal(a.codes, b.codes) and torch.equal(a.text, b.text) and torch.equal(a.offsets, b.offsets)
    assert {k: v for k, v in a.meta.items() if k != "import"} == {k: v for k, v in b.meta.items() if k != "import"}
    assert (whole / "skipped.jsonl").read_text() == (parted / "skipped.jsonl").read_text()
    run_import(folder, parted, gen)  # a finished import: rerunning changes nothing
    assert torch.equal(TokenData.load(parted).codes, a.codes)
    with pytest.raises(InputError, match="other arguments \\(seed differs\\)"):
        run_import(folder, parted, gen, seed=5)


def test_cli_import_and_refusals(folder, tmp_path, capsys):
    src, captions = folder
    out = tmp_path / "cli"
    args = ["data", "import", str(src), "--captions", str(captions), "--model", "debug", "--out", str(out)]
    assert main([*args, "--segment", "1", "--no-progress"]) == 0
    assert "6 file(s) skipped" in capsys.readouterr().out
    assert main([*args, "--segment", "11", "--no-progress"]) == 2  # the debug model's maximum is 10 s
    assert main([*args, "--segment", "2", "--no-progress"]) == 2  # other arguments than the started import
    err = capsys.readouterr().err
    assert "--segment must be in (0, 10]" in err and "segment differs" in err
    assert main([*args[:-1], str(tmp_path / "x"), "--valid-share", "1", "--no-progress"]) == 2
    assert not (tmp_path / "x").exists()
