"""Text–audio embedder: loss arithmetic, shapes, normalisation, files, and the recipe's smoke run."""

from __future__ import annotations

import json
import math

import pytest
import torch

from evaluation.reward_math import cosine_adherence
from models.audio_tower import segment_starts, split_segments
from models.debug import tiny_embedder_config
from models.embedder import EmbedderConfig, TextAudioEmbedder
from musicrl.losses import info_nce_loss
from musicrl.rewards import TextAdherence

SR = 16000


def tiny_config() -> EmbedderConfig:
    return tiny_embedder_config()


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    from musicrl.corpus.build import build_corpus

    out = tmp_path_factory.mktemp("corpus6")
    build_corpus(out, num_clips=6, seed=0, duration=2.0, progress=False)
    return out


def test_info_nce_on_identity_similarity():
    """logits = I (2x2): each row's softmax gives the match e/(e+1), so both directions cost
    -ln(e/(e+1)) = ln(1 + e^-1) = 0.31326."""
    assert info_nce_loss(torch.eye(2)).item() == pytest.approx(math.log(1 + math.exp(-1)), abs=1e-6)


def test_info_nce_uniform_logits_is_log_batch():
    """All logits equal: every row is uniform over B, cross-entropy ln B = ln 4 in both directions."""
    assert info_nce_loss(torch.zeros(4, 4)).item() == pytest.approx(math.log(4), abs=1e-6)


def test_info_nce_is_symmetric_mean_of_both_directions():
    logits = torch.randn(5, 5, generator=torch.Generator().manual_seed(0))
    t = torch.arange(5)
    expected = 0.5 * (torch.nn.functional.cross_entropy(logits, t) + torch.nn.functional.cross_entropy(logits.t(), t))
    assert info_nce_loss(logits).item() == pytest.approx(expected.item(), abs=1e-6)


def test_segments_cover_the_clip_without_padding():
    assert segment_starts(8 * SR, 4 * SR) == [0, 4 * SR]
    assert segment_starts(10, 4) == [0, 3, 6]  # three windows, the last flush with the end
    assert segment_starts(3, 4) == [0]
    wav = torch.arange(10.0)[None]
    segs = split_segments(wav, 4)
    assert segs.shape == (1, 3, 4)
    assert segs[0, -1].tolist() == [6.0, 7.0, 8.0, 9.0]


def test_gain_adds_a_constant_to_log_features():
    """The recipes augment cached features by adding 2 ln g: check it against the real front end."""
    model = TextAudioEmbedder(tiny_config())
    wav = torch.randn(1, SR, generator=torch.Generator().manual_seed(0)) * 0.3
    a, b = model.frontend.log_features(wav), model.frontend.log_features(2 * wav)
    assert torch.allclose(b - a, torch.full_like(a, 2 * math.log(2)), atol=1e-3)


def test_shapes_norms_and_adherence_equals_segment_mean_cosine():
    torch.manual_seed(0)
    model = TextAudioEmbedder(tiny_config()).eval()
    wav = torch.randn(3, int(2.5 * SR)) * 0.1
    prompts = ["fast techno with a synth lead", "calm jazz", "a rock song in E minor"]
    audio, text = model.embed_audio(wav), model.embed_text(prompts)
    assert audio.shape == (3, 8) and text.shape == (3, 8)
    assert torch.allclose(audio.norm(dim=-1), torch.ones(3), atol=1e-5)
    assert torch.allclose(text.norm(dim=-1), torch.ones(3), atol=1e-5)
    segs = model.embed_audio_segments(wav)
    assert segs.shape == (3, 3, 8)  # 2.5 s in 1 s windows -> 3 windows
    score = TextAdherence(model)(prompts, wav)
    assert score.shape == (3,) and bool((score.abs() <= 1 + 1e-5).all())
    by_hand = torch.stack([(segs[:, i] * text).sum(-1) for i in range(3)], 1).mean(1)  # unit vectors: dot = cos
    assert torch.allclose(score, by_hand, atol=1e-5) and torch.equal(score, cosine_adherence(text, segs))
    with pytest.raises(ValueError):
        model.embed_audio(torch.zeros(SR))  # [S] is not a batch


def test_save_load_round_trip(tmp_path):
    torch.manual_seed(1)
    model = TextAudioEmbedder(tiny_config()).eval()
    model.frontend.mean.fill_(-3.0)  # buffers travel too
    model.save(tmp_path / "emb")
    assert sorted(p.name for p in (tmp_path / "emb").iterdir()) == ["embedder.json", "embedder.safetensors"]
    loaded = TextAudioEmbedder.load(tmp_path / "emb")
    assert loaded.cfg == model.cfg
    wav = torch.randn(2, SR) * 0.1
    assert torch.equal(loaded.embed_audio(wav), model.embed_audio(wav))
    assert torch.equal(loaded.embed_text(["a b", "c"]), model.embed_text(["a b", "c"]))


def test_retrieval_metrics_hand_values():
    from evaluation.scorer_metrics import retrieval_metrics

    e = torch.eye(3)
    records = [{"style": s} for s in ("jazz", "rock", "jazz")]
    m = retrieval_metrics(e, e, records, k=2)
    assert m["R@1"] == 1.0 and m["chance_R@1"] == pytest.approx(1 / 3) and m["chance_R@2"] == pytest.approx(2 / 3)
    # reversed pairing: text i matches audio 2-i, so only the middle one is right
    m = retrieval_metrics(e, e.flip(0), records, k=1)
    assert m["R@1"] == pytest.approx(1 / 3)
    # k=1 style hit: the top clip of each query has the same style for the jazz queries (0<->2)
    assert m["style_hit@1"] == pytest.approx(1.0)
    # chance of a style hit in 1 draw = m/N: (2/3 + 1/3 + 2/3) / 3
    assert m["chance_style_hit@1"] == pytest.approx(5 / 9)


def _tiny_recipe_config(corpus, out, steps):
    from musicrl.recipes.embedder import Config

    return Config(
        corpus=corpus,
        out=out,
        model=tiny_config(),
        steps=steps,
        batch_size=4,
        warmup=1,
        log_every=1,
        eval_every=2,
        save_every=2,
        seed=0,
        device="cpu",
    )


def test_recipe_smoke_run_and_resume(corpus, tmp_path, capsys):
    from musicrl.recipes import embedder as recipe

    out = tmp_path / "run"
    metrics = recipe.main(_tiny_recipe_config(corpus, out, steps=3))
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [1, 2, 3]
    assert all(math.isfinite(r["loss"]) for r in log)
    assert metrics["test"]["N"] == 1 and "R@1" in metrics["test"]
    assert json.loads((out / "metrics.json").read_text())["step"] == 3
    trained = TextAudioEmbedder.load(out / "model")
    fresh = recipe.build_model(_tiny_recipe_config(corpus, out, steps=3))
    changed = [n for n, p in fresh.named_parameters() if not torch.equal(p, dict(trained.named_parameters())[n])]
    assert "audio_proj.weight" in changed and "text_proj.0.weight" in changed
    recipe.main(_tiny_recipe_config(corpus, out, steps=5))
    assert "resumed at step 3" in capsys.readouterr().out
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [1, 2, 3, 4, 5]
