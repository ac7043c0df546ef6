"""musicrl.rewards: every reward on hand-computed values, and `musicrl eval` reporting the very rewards."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass

import pytest
import torch

from evaluation.judges import AttributeJudgement
from models.errors import InputError
from musicrl import rewards


@dataclass
class StubEmbedder:
    """Text "a" -> e1, "b" -> e2; clip i's segments are the rows of ``segments[i]``."""

    segments: torch.Tensor  # [B, N, D]

    def embed_text(self, prompts):
        return torch.stack([torch.tensor([1.0, 0.0]) if p == "a" else torch.tensor([0.0, 1.0]) for p in prompts])

    def embed_audio_segments(self, audio):
        return self.segments[: audio.shape[0]]

    def embed_audio(self, audio):
        return torch.nn.functional.normalize(self.embed_audio_segments(audio).mean(1), dim=-1)


def test_adherence_is_the_mean_segment_cosine_not_the_cosine_of_the_mean():
    """Clip 0 ("a"): segments (1, 0) and (0, 1) -> cosines 1 and 0, mean 0.5 (the mean-pooled embedding
    (1, 1)/√2 would give 0.7071). Clip 1 ("b"): one segment (3, 4) -> cos with (0, 1) = 4/5."""
    segs = torch.tensor([[[1.0, 0.0], [0.0, 1.0]], [[3.0, 4.0], [3.0, 4.0]]])
    r = rewards.TextAdherence(StubEmbedder(segs))(["a", "b"], torch.zeros(2, 10))
    torch.testing.assert_close(r, torch.tensor([0.5, 0.8]))
    with pytest.raises(TypeError):
        rewards.TextAdherence(StubEmbedder(segs))("a", torch.zeros(1, 10))
    with pytest.raises(ValueError):
        rewards.TextAdherence(StubEmbedder(segs))(["a"], torch.zeros(2, 10))


def test_diversity_is_each_samples_mean_dissimilarity_to_its_siblings():
    """G = 3 of one prompt with embeddings e1, e1, e2: 1 - cos = 0 to the twin, 1 to e2.
    Rewards: (0 + 1)/2, (0 + 1)/2, (1 + 1)/2 = [0.5, 0.5, 1.0]; the prompt's metric is their mean 2/3."""
    segs = torch.tensor([[[1.0, 0.0]], [[1.0, 0.0]], [[0.0, 1.0]]])
    div = rewards.Diversity(StubEmbedder(segs), samples_per_prompt=3)
    r = div(["p", "p", "p"], torch.zeros(3, 10))
    torch.testing.assert_close(r, torch.tensor([0.5, 0.5, 1.0]))
    with pytest.raises(ValueError, match="prompt-major"):
        div(["p", "q", "p"], torch.zeros(3, 10))


class StubJudges:
    def judge(self, wav, stated, batch_size=16):
        heard = {"style": "rock", "mode": "minor"}
        return AttributeJudgement([{a: heard[a] == v for a, v in s.items()} for s in stated], torch.zeros(len(wav), 2))


def test_attribute_match_is_the_fraction_of_stated_attributes_heard_and_is_not_trainable():
    """Prompt x states rock + major: the judges hear rock, minor -> 1/2; y states nothing -> NaN."""
    match = rewards.AttributeMatch(StubJudges(), {"x": {"style": "rock", "mode": "major"}})
    r = match(["x", "y"], torch.zeros(2, 10))
    assert r[0].item() == 0.5 and math.isnan(r[1].item())
    with pytest.raises(InputError, match="attributes"):
        rewards.check_trainable(["adherence", "attributes"])
    rewards.check_trainable(["adherence", "quality", "diversity", "preference"])


class LengthRM:
    """A preference model that prefers longer captions: r = len(caption) + mean code."""

    def score(self, captions, codes):
        return torch.tensor([float(len(c)) for c in captions]) + codes.float().mean(dim=(1, 2))


def test_preference_slot_and_weighted_mix():
    """r_pref("aa", ones) = 2 + 1 = 3, r_pref("bbb", zeros) = 3 + 0 = 3. Mixed on captions "a", "b":
    adherence [1, 0] (segment (1, 0) against e1, e2), preference [1 + 1, 1 + 0] = [2, 1];
    2·adherence + 0.5·preference = [2 + 1, 0 + 0.5] = [3, 0.5]."""
    assert isinstance(LengthRM(), rewards.PreferenceModel)
    codes = torch.stack([torch.ones(4, 5, dtype=torch.long), torch.zeros(4, 5, dtype=torch.long)])
    pref = rewards.PreferenceReward(LengthRM())
    with pytest.raises(ValueError, match="codes"):
        pref(["aa", "bbb"], torch.zeros(2, 10))
    torch.testing.assert_close(pref(["aa", "bbb"], None, codes), torch.tensor([3.0, 3.0]))
    segs = torch.tensor([[[1.0, 0.0]], [[1.0, 0.0]]])
    mix = rewards.WeightedReward(
        {"adherence": rewards.TextAdherence(StubEmbedder(segs)), "preference": pref},
        {"adherence": 2.0, "preference": 0.5},
    )
    torch.testing.assert_close(mix(["a", "b"], torch.zeros(2, 10), codes), torch.tensor([3.0, 0.5]))
    with pytest.raises(ValueError, match="no weight"):
        rewards.WeightedReward({"adherence": mix.rewards["adherence"]}, {})(["a"], torch.zeros(1, 10))


def test_eval_reports_the_rl_reward_bit_for_bit(tmp_path):
    """`musicrl eval` with a (tiny, untrained) embedder: each clip's adherence in results.jsonl equals
    TextAdherence on the same clips (same seeds, same batch), and its diversity equals Diversity."""
    from models.debug import debug_generator, tiny_embedder_config
    from models.embedder import TextAudioEmbedder
    from models.sampling import SamplingParams
    from musicrl.cli import main

    cfg = tiny_embedder_config(sample_rate=8000)
    cfg.segment_s = 0.1  # 0.25 s clips -> 3 segments: the per-segment mean differs from the pooled cosine
    path = TextAudioEmbedder(cfg).save(tmp_path / "emb")
    prompts = tmp_path / "p.txt"
    prompts.write_text("fast rock\ncalm piano\n")
    out = tmp_path / "eval"
    args = ["eval", "--models", "debug", "--cfg", "3", "--prompts", str(prompts), "--samples-per-prompt", "2"]
    args += ["--duration", "0.25", "--reference", "none", "--embedder", str(path), "--out", str(out)]
    assert main(args) == 0
    rows = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    captions, seeds = [r["caption"] for r in rows], [r["seed"] for r in rows]
    audio = debug_generator().generate(["fast rock", "calm piano"], 0.25, SamplingParams(cfg=3.0), seeds, 2).audio
    embedder = TextAudioEmbedder.load(path)
    adherence = rewards.TextAdherence(embedder)(captions, audio[:, 0])
    diversity = rewards.Diversity(embedder, 2)(captions, audio[:, 0])
    assert [r["adherence"] for r in rows] == adherence.tolist()
    assert [r["diversity"] for r in rows] == diversity.tolist()
    pooled = (embedder.embed_audio(audio[:, 0]) * embedder.embed_text(captions)).sum(-1)
    assert not torch.equal(pooled, adherence)  # the formula eval used to report is gone


def test_floors_hold_even_inside_functions():
    """models <- evaluation <- musicrl: no import in models/ or evaluation/ points up, not even one tucked
    inside a function (evaluation gets the rewards by injection instead)."""
    import ast
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    above = {"models": ("evaluation", "musicrl", "app"), "evaluation": ("musicrl", "app")}
    bad = []
    for floor, forbidden in above.items():
        for file in sorted((root / floor).rglob("*.py")):
            for node in ast.walk(ast.parse(file.read_text())):
                names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
                names += [node.module or ""] if isinstance(node, ast.ImportFrom) else []
                bad += [f"{file.relative_to(root)}: {n}" for n in names if n.split(".")[0] in forbidden]
    assert not bad, bad
