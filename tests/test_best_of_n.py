"""Best-of-N: picks the argmax (ties low, NaN last), is deterministic by seed, N = 1 is plain generation,
and the kept clip is exactly what plain sampling with its candidate's seed gives; CLI and eval wiring."""

from __future__ import annotations

import json
import math

import pytest
import soundfile as sf
import torch

from models.errors import InputError
from models.sampling import SamplingParams
from musicrl.best_of_n import MAX_BEST_OF, best_of_n, candidate_seeds, pick_best
from musicrl.cli import main

NAN, INF = math.nan, math.inf
PARAMS = SamplingParams(cfg=3.0, top_k=50)


class CodeMean:
    """Toy reward: the mean code of each clip, a known function of the codes; records how it was called."""

    def __init__(self):
        self.calls = []

    def __call__(self, prompts, audio, codes=None):
        self.calls.append((list(prompts), tuple(audio.shape)))
        return codes.float().mean((1, 2))


def test_pick_best_hand_values():
    """Row 0: 3 at 1 and 2 -> the lower, 1. Row 1: NaN counts as -inf -> 0 at index 1. Row 2: all NaN -> 0.
    Row 3: [-inf, NaN, -5] -> -5 at 2. Row 4: one candidate -> 0."""
    r = torch.tensor([[1.0, 3.0, 3.0], [NAN, 0.0, -1.0], [NAN, NAN, NAN], [-INF, NAN, -5.0]])
    assert pick_best(r).tolist() == [1, 1, 0, 2]
    assert pick_best(r).dtype == torch.long
    assert pick_best(torch.tensor([[0.5]])).tolist() == [0]
    with pytest.raises(ValueError):
        pick_best(torch.zeros(3))


def test_candidate_seeds_distinct_deterministic_prefix_and_in_range():
    assert candidate_seeds(7, 1) == [7]
    a = candidate_seeds(7, MAX_BEST_OF)
    assert len(set(a)) == MAX_BEST_OF and a[0] == 7 and a == candidate_seeds(7, MAX_BEST_OF)
    assert candidate_seeds(7, 4) == a[:4]  # best-of-4's candidates are best-of-64's first four
    assert all(0 <= s < 2**31 for s in a[1:])
    # consecutive rows (seeds 7, 8: plain generation's row seeds) share only nothing
    assert not set(a) & set(candidate_seeds(8, MAX_BEST_OF))
    for bad in (0, MAX_BEST_OF + 1, True, 2.0):
        with pytest.raises(InputError):
            candidate_seeds(0, bad)


def test_keeps_the_argmax_candidate_sampled_alone_with_its_seed(debug_gen):
    """2 prompts x 1 sample, N = 3, at most 2 rows per batch (the N > max_rows path): every candidate's
    reward equals the toy reward of that candidate sampled alone through generate_codes, and the kept
    codes are the argmax candidate's."""
    reward = CodeMean()
    out = best_of_n(debug_gen, reward, ["calm piano", "fast techno"], 0.2, PARAMS, seeds=[11, 40], n=3, max_rows=2)
    assert out.codes.shape == (2, 4, 10) and out.audio.shape == (2, 1, 1600) and out.rewards.shape == (2, 3)
    assert out.prompts == ["calm piano", "fast techno"] and out.seeds == [11, 40]
    # scored once per output row with all its N candidates, prompt-major, mono audio
    assert reward.calls == [(["calm piano"] * 3, (3, 1600)), (["fast techno"] * 3, (3, 1600))]
    for r, (prompt, seed) in enumerate(zip(out.prompts, out.seeds, strict=True)):
        alone = [debug_gen.generate_codes([prompt], 0.2, PARAMS, seeds=[s]).codes[0] for s in candidate_seeds(seed, 3)]
        expected = torch.stack([c.float().mean() for c in alone])
        assert torch.equal(out.rewards[r], expected)
        assert int(out.chosen[r]) == int(expected.argmax())
        assert torch.equal(out.codes[r], alone[int(out.chosen[r])])
        assert out.chosen_seeds[r] == candidate_seeds(seed, 3)[int(out.chosen[r])]
    # decoded in batches of another size: equal up to float rounding
    torch.testing.assert_close(out.audio, debug_gen.decode(out.codes), rtol=0, atol=1e-6)
    steps = 10 + 4 - 1
    assert out.cost["candidates"] == 3 and out.cost["forward_passes"] == steps * 2 * 3
    assert all(out.cost[k] >= 0 for k in ("sample_s", "decode_s", "score_s", "total_s"))


def test_deterministic_by_seed_and_independent_of_batching(debug_gen):
    args = (debug_gen, CodeMean(), ["rock"], 0.2, PARAMS)
    a = best_of_n(*args, seeds=5, n=4, samples_per_prompt=2)
    again = best_of_n(*args, seeds=5, n=4, samples_per_prompt=2)
    b = best_of_n(*args, seeds=5, n=4, samples_per_prompt=2, max_rows=3)  # batches of 1 row x 3, then 1
    assert a.seeds == [5, 6]
    for field in ("codes", "audio", "rewards", "chosen"):
        assert torch.equal(getattr(a, field), getattr(again, field)), field
    for field in ("codes", "rewards", "chosen"):
        assert torch.equal(getattr(a, field), getattr(b, field)), field
    torch.testing.assert_close(a.audio, b.audio, rtol=0, atol=1e-6)  # decoded in other batch sizes
    c = best_of_n(*args, seeds=6, n=4, samples_per_prompt=2)
    assert not torch.equal(a.rewards, c.rewards)
    steps = []
    best_of_n(*args, seeds=5, n=4, samples_per_prompt=2, max_rows=4, on_step=lambda d, t: steps.append((d, t)))
    assert steps[-1] == (26, 26) and [d for d, _ in steps] == list(range(1, 27))  # 2 batches of 13 steps


def test_best_of_one_is_plain_generation(debug_gen):
    plain = debug_gen.generate(["jazz", "rock"], 0.2, PARAMS, seeds=3, samples_per_prompt=2)
    one = best_of_n(debug_gen, CodeMean(), ["jazz", "rock"], 0.2, PARAMS, seeds=3, n=1, samples_per_prompt=2)
    assert torch.equal(one.codes, plain.codes) and torch.equal(one.audio, plain.audio)
    assert one.seeds == plain.seeds and one.chosen.tolist() == [0] * 4 and one.rewards.shape == (4, 1)


@pytest.mark.parametrize(
    "kwargs,needle",
    [
        ({"n": 0}, "from 1 to 64"),
        ({"n": 65}, "from 1 to 64"),
        ({"n": 2, "max_rows": 0}, "max_rows"),
        ({"n": 2, "params": SamplingParams(greedy=True)}, "greedy"),
        ({"n": 2, "prompts": [""]}, "empty"),
    ],
)
def test_bad_requests(debug_gen, kwargs, needle):
    call = {"prompts": ["x"], "params": PARAMS, **kwargs}
    with pytest.raises(InputError, match=needle):
        best_of_n(debug_gen, CodeMean(), call.pop("prompts"), 0.2, call.pop("params"), seeds=0, **call)


@pytest.fixture(scope="module")
def quality_dir(tmp_path_factory):
    """An untrained tiny quality model at the debug model's 8 kHz."""
    from models.audio_tower import FrontendConfig, TowerConfig
    from models.quality import QualityConfig, QualityModel

    cfg = QualityConfig(FrontendConfig(sample_rate=8000, n_mels=8, chroma=False), TowerConfig(widths=[4], out=4))
    torch.manual_seed(0)
    return QualityModel(cfg).save(tmp_path_factory.mktemp("q") / "q")


def _generate(tmp_path, out, *extra):
    argv = ["generate", "upbeat techno", "--model", "debug", "--duration", "0.2", "--out", str(tmp_path / out)]
    return main([*argv, *extra])


def test_cli_best_of_writes_rewards_choice_and_cost(tmp_path, quality_dir, capsys):
    assert _generate(tmp_path, "bo", "--best-of", "4", "--reward", "quality", "--quality", str(quality_dir)) == 0
    (meta_path,) = (tmp_path / "bo").glob("*.json")
    meta = json.loads(meta_path.read_text())
    assert meta["best_of"] == 4 and meta["reward"] == "quality=1" and len(meta["candidate_rewards"]) == 4
    assert meta["chosen"] == max(range(4), key=lambda i: (meta["candidate_rewards"][i], -i))
    assert meta["candidate_seeds"] == candidate_seeds(0, 4) and meta["seed"] == 0
    assert meta["chosen_seed"] == meta["candidate_seeds"][meta["chosen"]]
    assert meta["cost"]["forward_passes"] == 4 * 13 * 2 and meta["cost"]["candidates"] == 4
    err = capsys.readouterr().err
    assert "best-of-4 by quality=1: 104 forward passes per clip (4x plain)" in err
    # the kept clip is plain generation with the chosen candidate's seed: the same codes, byte for byte, and
    # the same 16-bit samples up to 1 LSB (decoding a batch of 4 vs 1 may round floats differently)
    assert (
        _generate(
            tmp_path, "bo2", "--best-of", "4", "--reward", "quality", "--quality", str(quality_dir), "--save-codes"
        )
        == 0
    )
    assert _generate(tmp_path, "plain", "--seed", str(meta["chosen_seed"]), "--save-codes") == 0
    npy = lambda d: next((tmp_path / d).glob("*.npy")).read_bytes()  # noqa: E731
    assert npy("bo2") == npy("plain")
    wav = lambda d: sf.read(next((tmp_path / d).glob("*.wav")), dtype="int16")[0].astype(int)  # noqa: E731
    assert abs(wav("bo") - wav("plain")).max() <= 1


@pytest.mark.parametrize(
    "extra,needle",
    [
        (["--best-of", "0"], "--best-of"),
        (["--best-of", "65"], "--best-of"),
        (["--best-of", "2", "--reward", "loudness"], "unknown reward 'loudness'"),
        (["--best-of", "2", "--reward", "quality=-1"], "finite number >= 0"),
        (["--best-of", "2", "--greedy"], "greedy"),
        (["--best-of", "2", "--reward", "quality", "--reward-model", "/no/dir"], "preference"),
        (["--best-of", "2", "--reward", "preference"], "reward model directory"),
        (["--quality", "/no/dir"], "add --best-of"),
        (["--best-of", "2", "--reward", "quality", "--quality", "/no/dir"], "not a directory"),
    ],
)
def test_cli_bad_best_of_exits_2_with_one_line(tmp_path, capsys, extra, needle):
    assert _generate(tmp_path, "out", *extra) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and needle in err[0], err
    assert not (tmp_path / "out").exists()


def test_eval_best_of_reports_cost_and_keeps_plain_rows(tmp_path, quality_dir):
    """Eval at cfg 1 with --best-of 1 2: the N = 1 rows equal a plain run's; the bo2 setting costs twice the
    forward passes, is labelled and carries N and the reward; since its candidate 0 is the plain clip of the
    same seed and the metric is the selecting reward, its quality is never below the plain clip's."""
    prompts = tmp_path / "p.txt"
    prompts.write_text("fast rock\ncalm piano\n")
    common = ["eval", "--models", "dbg=debug", "--cfg", "1", "--prompts", str(prompts), "--samples-per-prompt", "2"]
    common += ["--duration", "0.2", "--reference", "none", "--quality", str(quality_dir)]
    assert main([*common, "--out", str(tmp_path / "plain")]) == 0
    assert main([*common, "--best-of", "1", "2", "--reward", "quality", "--out", str(tmp_path / "bo")]) == 0
    read = lambda d, f: [json.loads(x) for x in (tmp_path / d / f).read_text().splitlines()]  # noqa: E731
    plain, rows = read("plain", "results.jsonl"), read("bo", "results.jsonl")
    assert [r for r in rows if r["model"] == "dbg"] == plain
    bo2 = [r for r in rows if r["model"] == "dbg bo2"]
    assert len(bo2) == 4 and all(r["best_of"] == 2 and r["best_of_reward"] == "quality=1" for r in bo2)
    assert all(b["quality"] >= p["quality"] - 1e-5 for b, p in zip(bo2, plain, strict=True))
    summaries = {s["model"]: s for s in read("bo", "summary.jsonl")}
    assert summaries["dbg"]["forward_passes_per_clip"] == 13 and "best_of" not in summaries["dbg"]
    assert summaries["dbg bo2"]["forward_passes_per_clip"] == 26 and summaries["dbg bo2"]["best_of"] == 2
    assert "| dbg bo2 | 1 |" in (tmp_path / "bo" / "report.md").read_text()
    assert main([*common, "--reward", "quality", "--out", str(tmp_path / "x")]) == 2  # no N > 1
