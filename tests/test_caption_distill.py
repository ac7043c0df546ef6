"""Caption distillation (``musicrl train caption-distill``): caption pairs that state the same labels, and the
recipe on a debug model — only the text's way in trains, the null condition stays the teacher's, the gap
closes, resume and export. Seconds each."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from models.checkpoint import load_checkpoint
from models.debug import debug_generator
from models.errors import InputError
from musicrl.cli import main as cli
from musicrl.config import load_config
from musicrl.corpus.build import clip_attributes, plan_clips
from musicrl.corpus.captions import make_caption, parse_caption
from musicrl.corpus.phrasing import caption_pair, free_caption
from musicrl.recipes import caption_distill
from tests.test_lora import token_dir


@pytest.fixture(scope="module")
def clips() -> list[dict]:
    return [clip_attributes(item) for item in plan_clips(3, 300)]


def test_a_template_can_state_exactly_the_labels_of_a_free_caption(clips):
    for k, attrs in enumerate(clips):
        _, mentioned = free_caption(attrs, np.random.default_rng([1, k]))
        caption, said = make_caption(attrs, np.random.default_rng([2, k]), mentioned)
        assert said == sorted(mentioned)
        assert parse_caption(caption) == {name: attrs[name] for name in mentioned}, caption
    with pytest.raises(ValueError, match="mentioned"):
        make_caption(clips[0], np.random.default_rng(0), ["colour"])
    with pytest.raises(ValueError, match="mentioned"):
        make_caption(clips[0], np.random.default_rng(0), [])


def test_choosing_the_labels_does_not_change_the_drawn_template(clips):
    """Corpus captions are drawn without ``mentioned``: the override must not move them."""
    for k, attrs in enumerate(clips[:50]):
        drawn, said = make_caption(attrs, np.random.default_rng([4, k]))
        again, _ = make_caption(attrs, np.random.default_rng([4, k]), said)
        assert again == drawn


def test_caption_pairs_state_the_same_labels(clips):
    shares = {0.0: [], 1.0: []}
    for share in shares:
        for k, attrs in enumerate(clips[:150]):
            asked, template, mentioned = caption_pair(attrs, np.random.default_rng([int(share), k]), share)
            truth = {name: attrs[name] for name in mentioned}
            assert parse_caption(asked) == truth and parse_caption(template) == truth, (asked, template)
            shares[share].append(asked)
    free = [free_caption(a, np.random.default_rng([0, k]))[0] for k, a in enumerate(clips[:150])]
    assert shares[0.0] != free  # the pair's own draws, but free captions...
    assert sum(c[:1].islower() for c in shares[0.0]) > 30  # ...in free phrasing (templates start upper or a/an)


# ---------------------------------------------------------------------------------------------
# The recipe on the debug model

RUN = ["model=debug", "batch_size=4", "frames=10", "lr=2e-2", "warmup=1", "val_pairs=4", "log_every=1",
       "lora.rank=4", "save_every=2", "keep_every=0"]


def labelled_tokens(path, gen, clips: list[dict]):
    """Random codes for ``clips`` (the last 2 held out) recorded as made with ``gen``, with their labels."""
    return token_dir(path, gen, n=len(clips), attributes=clips)


@pytest.fixture(scope="module")
def tokens(tmp_path_factory, clips):
    return labelled_tokens(tmp_path_factory.mktemp("tokens"), debug_generator(seed=0), clips[:10])


def config(tokens, out, *extra):
    return load_config(caption_distill.Config, None, [f"data={tokens}", f"out={out}", *RUN, *extra])


def test_step_trains_the_cross_attention_adapters_and_keeps_the_null_condition(tokens, tmp_path):
    state = caption_distill.setup(config(tokens, tmp_path / "r", "steps=3"))
    trained = {n for n, p in state.student.named_parameters() if p.requires_grad}
    assert trained and all(".lora_" in n and (".q." in n or ".kv." in n) for n in trained), trained
    teacher = {k: v.clone() for k, v in state.teacher.state_dict().items()}
    before = {k: v.clone() for k, v in state.student.state_dict().items()}
    batch = caption_distill.next_batch(state)
    assert batch.codes.shape == (4, 4, 10) and batch.asked.states.shape[0] == batch.template.states.shape[0] == 4
    metrics = caption_distill.step(state, batch)
    assert metrics["loss"] > 0 and metrics["rank_rows"] == 4
    assert all(torch.equal(v, teacher[k]) for k, v in state.teacher.state_dict().items())
    changed = {k for k, v in state.student.state_dict().items() if not torch.equal(v, before[k])}
    assert changed and all(".lora_" in k for k in changed)
    # the null condition skips cross-attention: the student's unconditional prediction is the teacher's
    inputs = torch.randint(0, 16, (4, 4, 8))
    with torch.no_grad():
        assert torch.equal(state.student(inputs, batch.asked.null()), state.teacher(inputs, batch.asked.null()))
        assert not torch.allclose(state.student(inputs, batch.asked), state.teacher(inputs, batch.asked))


def test_steps_close_the_gap_on_a_batch(tokens, tmp_path):
    state = caption_distill.setup(config(tokens, tmp_path / "r", "steps=30", "lr=5e-3"))
    batch = caption_distill.next_batch(state)
    gap = lambda: caption_distill.divergence(state.student, state.teacher, batch, "forward_kl").item()  # noqa: E731
    start = gap()
    for _ in range(15):
        caption_distill.step(state, batch)
        state.step += 1
    assert start > 0 and gap() < 0.5 * start


def test_the_same_step_draws_the_same_pairs(tokens, tmp_path):
    a = caption_distill.setup(config(tokens, tmp_path / "a", "steps=3"))
    b = caption_distill.setup(config(tokens, tmp_path / "b", "steps=3"))
    x, y = caption_distill.next_batch(a), caption_distill.next_batch(b)
    assert torch.equal(x.codes, y.codes) and torch.equal(x.asked.states, y.asked.states)
    a.step = 1
    assert not torch.equal(caption_distill.next_batch(a).asked.states, x.asked.states)


def test_run_closes_the_gap_resumes_and_exports(tokens, tmp_path):
    out = tmp_path / "run"
    caption_distill.main(config(tokens, out, "steps=4", "eval_every=2"))
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    vals = [r for r in log if "val_kl" in r]
    assert vals[0]["step"] == 0 and vals[-1]["step"] == 4
    summary = json.loads((out / "metrics.json").read_text())
    assert summary["first_val"]["step"] == 0 and summary["best"]["step"] in (2, 4) and summary["last_step"] == 4
    model = load_checkpoint(out / "model")
    assert model.meta["lineage"]["recipe"] == "caption-distill" and model.meta["lineage"]["parents"] == ["debug-0"]
    assert (out / "adapter" / "adapter_config.json").is_file()
    # resume: a longer run continues from the saved step
    caption_distill.main(config(tokens, out, "steps=6", "eval_every=2"))
    steps = [json.loads(line)["step"] for line in (out / "log.jsonl").read_text().splitlines() if "loss" in line]
    assert steps == [1, 2, 3, 4, 5, 6]


def test_refuses_data_without_labels_and_writes_nothing(tmp_path, clips, capsys):
    gen = debug_generator(seed=0)
    bare = labelled_tokens(tmp_path / "bare", gen, [{}] * 6)
    with pytest.raises(InputError, match="lacks clip labels"):
        caption_distill.setup(config(bare, tmp_path / "r1"))
    assert not (tmp_path / "r1").exists()
    args = ["train", "caption-distill", f"data={bare}", f"out={tmp_path / 'r2'}", "model=debug"]
    assert cli(args) == 2 and "lacks clip labels" in capsys.readouterr().err
    assert not (tmp_path / "r2").exists()
    with pytest.raises(InputError, match="divergence"):
        caption_distill.setup(config(bare, tmp_path / "r4", "divergence=l2"))
    with pytest.raises(InputError, match="frames"):
        caption_distill.setup(config(labelled_tokens(tmp_path / "ok", gen, clips[:6]), tmp_path / "r3", "frames=99"))


def test_two_processes_take_their_share_of_the_pairs_and_equal_one(tokens, tmp_path):
    from tests.test_distributed import assert_same_weights, torchrun, weights

    args = [f"data={tokens}", *RUN, "steps=2", "eval_every=100", "save_every=2"]
    caption_distill.main(load_config(caption_distill.Config, None, [*args, f"out={tmp_path / 'one'}"]))
    torchrun(2, ["caption-distill", *args, f"out={tmp_path / 'two'}"])
    assert_same_weights(weights(tmp_path / "one", "adapter"), weights(tmp_path / "two", "adapter"))
    logs = [[json.loads(x) for x in (tmp_path / d / "log.jsonl").read_text().splitlines()] for d in ("one", "two")]
    steps = [[r for r in log if "loss" in r] for log in logs]
    assert [r["rank_rows"] for r in steps[0]] == [4, 4] and [r["rank_rows"] for r in steps[1]] == [2, 2]
    assert [r["loss"] for r in steps[0]] == pytest.approx([r["loss"] for r in steps[1]], rel=1e-4)
