"""What a new user tripped on in their first hour with a fresh clone (issue 14's list), each held by a test:
threads, non-UTF-8 and control-character prompts, the text tokens a model reads, clipping, help texts."""

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from models.audio_io import PEAK_CEILING, peak_normalize
from models.runtime import default_threads
from musicrl.cli import _leaves, build_parser, main, states_default

ROOT = Path(__file__).resolve().parents[1]


# ----------------------------------------------------------------------------- threads


def test_default_threads_rule():
    assert [default_threads(c) for c in (1, 2, 4, 5, 8, 16, 32, 64, 256)] == [1, 1, 1, 1, 2, 4, 8, 8, 8]


def test_every_heavy_command_takes_threads():
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for name in ("generate", "train", "eval", "merge", "soup", "app", "loop", "data", "bench", "panel"):
        for leaf in _leaves(sub.choices[name]):
            assert any("--threads" in a.option_strings for a in leaf._actions), leaf.prog


def test_threads_are_set_and_checked(tmp_path, capsys):
    before = torch.get_num_threads()
    try:
        argv = ["generate", "a calm piano", "--model", "debug", "--duration", "0.2", "--out", str(tmp_path / "o")]
        assert main([*argv, "--threads", "1"]) == 0
        assert torch.get_num_threads() == 1
        assert main([*argv, "--threads", "0"]) == 2
        assert "--threads must be >= 1, got 0" in capsys.readouterr().err
    finally:
        torch.set_num_threads(before)


# ----------------------------------------------------------------------------- prompts


def _run_cli(*args: bytes) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable.encode(), b"-m", b"musicrl.cli", *args], capture_output=True, env=env,
                          timeout=120, cwd=ROOT)


def test_non_utf8_prompt_is_one_line_exit_2(tmp_path):
    """Bytes that are not UTF-8 on the command line reach Python as lone surrogates: refused, no traceback."""
    out = tmp_path / "o"
    done = _run_cli(b"generate", b"calm \xff piano", b"--model", b"debug", b"--out", str(out).encode())
    err = done.stderr.decode(errors="replace").strip().splitlines()
    assert done.returncode == 2, done.stderr
    assert err == ["musicrl generate: error: the prompt contains 1 control or binary character(s) (first: U+DCFF); "
                   "type plain text"]
    assert not out.exists()


@pytest.mark.parametrize("prompt", ["calm \x1b[31m piano", "calm\x00piano", "calm \u202e piano"])
def test_control_characters_are_refused_like_the_app(tmp_path, capsys, prompt):
    out = tmp_path / "o"
    assert main(["generate", prompt, "--model", "debug", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "control or binary character" in err[0]
    assert not out.exists()


def test_prompt_cut_warns_with_the_ignored_words(tmp_path, capsys, debug_gen):
    """The debug conditioner reads 32 words: two prompts differing after word 32 give the same audio, and the
    command says which words it ignored."""
    head = " ".join(f"w{i}" for i in range(32))
    argv = ["--model", "debug", "--duration", "0.2", "--save-codes"]
    assert main(["generate", head + " violin solo", *argv, "--out", str(tmp_path / "a")]) == 0
    err = capsys.readouterr().err
    assert "warning: the prompt has 34 text tokens and this model reads the first 32: 'violin solo' is ignored" in err
    assert main(["generate", head + " drum solo", *argv, "--out", str(tmp_path / "b")]) == 0
    assert "'drum solo' is ignored" in capsys.readouterr().err
    a, b = (np.load(next((tmp_path / d).glob("*.npy"))) for d in "ab")
    assert np.array_equal(a, b)  # what the warning is about
    assert main(["generate", "w0 w1 w2", *argv, "--out", str(tmp_path / "c")]) == 0
    assert "warning" not in capsys.readouterr().err
    assert debug_gen.prompt_cut_warning(head) is None


def test_minilm_read_part_is_a_prefix_of_the_prompt():
    from models.conditioners import MiniLMConditioner

    cond = MiniLMConditioner(max_tokens=8)
    prompt = "an energetic techno track with a bright synth lead and rolling bass"
    part, count = cond.read_part(prompt)
    assert count == len(cond.tokenizer(prompt)["input_ids"]) > 8
    assert prompt.startswith(part) and len(cond.tokenizer(part)["input_ids"]) == 8  # [CLS] + 6 words + [SEP]
    assert cond.read_part("calm piano") == ("calm piano", 4)


# ----------------------------------------------------------------------------- clipping


def test_peak_normalize_by_hand():
    audio = torch.tensor([[[0.5, -2.0, 1.0]], [[0.2, -0.3, 0.1]], [[float("nan"), 0.5, 0.0]]])
    out, gains = peak_normalize(audio, ceiling=0.9)
    assert torch.allclose(gains, torch.tensor([0.45, 1.0, 1.0]))
    assert torch.allclose(out[0], torch.tensor([[0.225, -0.9, 0.45]]))
    assert torch.equal(out[1], audio[1]) and torch.equal(out[2], torch.tensor([[0.0, 0.5, 0.0]]))


def test_loud_decoder_output_is_scaled_not_clipped(tmp_path, monkeypatch):
    """A codec that decodes past full scale: the WAV keeps the waveform's shape under the ceiling (no sample
    at full scale) and the JSON records the gain."""
    import models.registry
    from models.debug import debug_generator

    gen = debug_generator()
    decode = gen.codec.decode
    monkeypatch.setattr(gen.codec, "decode", lambda codes: decode(codes) * 40.0)
    monkeypatch.setattr(models.registry, "load_generator", lambda spec=None: gen)
    assert main(["generate", "loud", "--model", "debug", "--duration", "0.4", "--out", str(tmp_path)]) == 0
    wav, _ = sf.read(next(tmp_path.glob("*.wav")), dtype="int16")
    peak = int(np.abs(wav).max())
    assert peak <= PEAK_CEILING * 32768 + 1 and int((np.abs(wav) >= 32767).sum()) == 0
    meta = json.loads(next(tmp_path.glob("*.json")).read_text())
    norm = meta["peak_normalization"]
    assert norm["ceiling"] == PEAK_CEILING and 0 < norm["gain"] < 1
    expected = gen.codec.decode(gen.generate_codes(["loud"], 0.4, _params(), seeds=0).codes)
    assert norm["gain"] == pytest.approx(PEAK_CEILING / float(expected.abs().max()), rel=1e-5)


def _params():
    from models.sampling import SamplingParams

    return SamplingParams(cfg=3.0, temperature=1.0, top_k=250, top_p=1.0)


# ----------------------------------------------------------------------------- help


def _options():
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for leaf in dict.fromkeys(p for name in sub.choices for p in _leaves(sub.choices[name])):
        for action in leaf._actions:
            if not isinstance(action, argparse._HelpAction):
                yield leaf, action


def test_every_flag_is_described_and_shows_its_default():
    undescribed, no_default = [], []
    for leaf, action in _options():
        formatter = leaf._get_formatter()
        text = formatter._get_help_string(action)
        if not (action.help or "").strip():
            undescribed.append(f"{leaf.prog} {action.option_strings or action.dest}")
        shown = action.default
        if (action.option_strings and not action.required and shown not in (None, "", [], argparse.SUPPRESS)
                and not isinstance(shown, bool) and not states_default(text)):
            no_default.append(f"{leaf.prog} {action.option_strings}")
    assert not undescribed, undescribed
    assert not no_default, no_default


def test_generate_help_states_the_maximum_duration(capsys):
    with pytest.raises(SystemExit):
        main(["generate", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "8 s for the embedded default" in text and "(default: 250)" in text


def test_states_default():
    assert states_default("clips at once (default 16)") and states_default("embedder (default: the shipped one)")
    assert states_default("people's (default), the panel's") and states_default("loop defaults: {'steps': 40}")
    assert not states_default("'default', 'debug', or a checkpoint directory")
    assert not states_default("8 s for the embedded default)") and not states_default("default (the default), debug")


def test_no_citation_of_a_file_users_do_not_have():
    """Docs and comments cite the papers, not 'ALGORITHMS §N' (a design file that is not in the project)."""
    hits = []
    for path in ROOT.rglob("*"):
        if path.suffix in (".py", ".md", ".yaml") and not {"runs", "data", ".git"} & set(path.parts):
            if path != Path(__file__) and "ALGORITHMS" in path.read_text(errors="replace"):
                hits.append(str(path.relative_to(ROOT)))
    assert not hits, hits


def test_readme_first_eval_runs_without_a_corpus(tmp_path, monkeypatch):
    """The README's "Evaluate in a minute" command works right after install: no corpus, nothing built
    (run here at 1 s clips instead of 4 to keep the test short)."""
    import re
    import shlex

    readme = (ROOT / "README.md").read_text()
    block = re.search(r"### Evaluate in a minute.*?```bash\n(.*?)```", readme, re.S).group(1)
    argv = shlex.split(block.replace("\\\n", " "))
    assert argv[:2] == ["musicrl", "eval"] and "--reference" in argv
    argv[argv.index("--duration") + 1] = "1"
    argv[argv.index("--out") + 1] = str(tmp_path / "eval")
    argv[argv.index("--prompts") + 1] = str(ROOT / argv[argv.index("--prompts") + 1])
    monkeypatch.chdir(tmp_path)  # no data/corpus here
    assert main([*argv[1:], "--threads", "1"]) == 0
    summary = [json.loads(line) for line in (tmp_path / "eval" / "summary.jsonl").read_text().splitlines()]
    assert summary[0]["clips"] == 8 and 0 <= summary[0]["adherence"] <= 1
    assert (tmp_path / "eval" / "report.md").is_file()


def test_prefs_export_without_a_store_writes_nothing(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["prefs", "export", "--out", "votes.jsonl"]) == 2
    assert "there is no preference store" in capsys.readouterr().err
    assert list(tmp_path.rglob("*")) == []  # no empty database, no data/app folder, no output file


def test_app_records_the_prompt_cut_and_the_gain(tmp_path):
    """The app's stored clip says which words the model ignored (the page shows it as a warning) and the
    peak normalisation's gain, as the CLI's JSON does."""
    from app.generation import GenerationService
    from app.registry import ModelRegistry, RegistryEntry
    from app.store import open_store

    registry = ModelRegistry([RegistryEntry("a", "A", path="debug")])
    with open_store(None, tmp_path / "data") as store:
        service = GenerationService(registry, store, autostart=False)
        try:
            long = " ".join(f"w{i}" for i in range(34))
            request = service.request("a", long, 0.2, _params(), (0,))
            audios = service.generate_batch([request])[0]
            clip = service.store_clips(request, audios, source="generate")[0]
            assert clip.params["prompt_cut"].endswith("'w32 w33' is ignored")
            norm = clip.params["peak_normalization"]
            assert norm["ceiling"] == PEAK_CEILING and 0 < norm["gain"] <= 1
            short = service.request("a", "w0 w1", 0.2, _params(), (0,))
            clip = service.store_clips(short, service.generate_batch([short])[0], source="generate")[0]
            assert "prompt_cut" not in clip.params
        finally:
            service.close()
