"""evaluation.continuity by hand, and ``musicrl bench seams`` end to end on the debug model."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from evaluation.continuity import across, chroma_cosine, embedding_cosine, inside_times, seam_times
from models.long_form import sliding_windows
from musicrl.cli import main


def _sine(freq: float, seconds: float = 1.0, rate: int = 16000, amp: float = 0.5) -> torch.Tensor:
    return amp * torch.sin(2 * math.pi * freq * torch.arange(int(seconds * rate)) / rate)


def test_chroma_cosine():
    """The same pitch class at any loudness or octave -> 1; a tritone away -> far less; silence -> NaN."""
    a4 = _sine(440.0)
    assert chroma_cosine(a4, 0.1 * a4, 16000) == pytest.approx(1.0, abs=1e-6)
    assert chroma_cosine(a4, _sine(880.0), 16000) > 0.9
    assert chroma_cosine(a4, _sine(622.25), 16000) < 0.3
    assert math.isnan(chroma_cosine(torch.zeros(16000), a4, 16000))


def test_embedding_cosine_and_across_by_hand():
    """embed = the unit vector (mean, 1 - mean) direction; on a step signal 0 | 1 at t = 1 s with span 0.5 s:
    across t = 1 -> cos([0, 1], [1, 0]) = 0; across t = 0.5 and 1.5 -> 1."""
    embed = lambda w: torch.nn.functional.normalize(torch.stack([w.mean(1), 1 - w.mean(1)], 1), dim=1)  # noqa: E731
    sim = embedding_cosine(embed)
    wav = torch.cat([torch.zeros(10), torch.ones(10)])
    np.testing.assert_allclose(across(wav, 10, [0.5, 1.0, 1.5], 0.5, sim), [1.0, 0.0, 1.0], atol=1e-6)
    with pytest.raises(ValueError):
        across(wav, 10, [1.8], 0.5, sim)


def test_seam_and_inside_times_of_the_worked_example():
    """Windows [0,10) [6,16) [12,22) [18,25) at 1 frame/s, span 2: seams where new frames start, 10 16 22;
    inside points: the middles of the new frames [0,10) [10,16) [16,22) -> 5 13 19 ([22,25) is < 4 long)."""
    windows = sliding_windows(25, 10, 6)
    assert seam_times(windows, 1.0) == [10, 16, 22]
    assert inside_times(windows, 1.0, 2.0) == [5, 13, 19]


def test_bench_seams_on_the_debug_model(tmp_path, capsys):
    assert main(["bench", "seams", "--model", "debug", "--duration", "11", "--prompts", "2", "--extend-stride",
                 "6", "--cfg", "1", "--out", str(tmp_path)]) == 0
    result = json.loads((tmp_path / "seams.jsonl").read_text())
    assert (result["windows"], result["seams_s"], result["inside_s"]) == (2, [10.0], [5.0])
    for metric in ("chroma", "embedder"):
        s = result["summary"][metric]
        assert s["ratio_ci"][0] <= s["ratio"] <= s["ratio_ci"][1] and -1 <= s["seam"] <= 1
    assert "ratio" in capsys.readouterr().out
    assert main(["bench", "seams", "--model", "debug", "--duration", "5"]) == 2
    assert "no seam" in capsys.readouterr().err
