"""CLP: the steerable LM (parameter-space conditioning, by hand), rewarded soups as the same object, and the
``clp`` recipe on the debug model."""

from __future__ import annotations

import json

import pytest
import torch

from models.checkpoint import load_checkpoint, save_checkpoint
from models.debug import debug_generator
from models.errors import InputError
from models.merge import lerp
from models.steerable import SteerableLM, conditioned_names, is_steerable, load_steerable, steered
from musicrl.config import load_config
from musicrl.recipes import clp


def perturbed(seed: int = 0) -> tuple:
    """The debug generator and a steerable LM over (adherence, quality) whose quality set is moved."""
    gen = debug_generator()
    steer = SteerableLM(gen.lm, ("adherence", "quality"))
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in steer.experts["quality"]:
            p.add_(0.05 * torch.randn(p.shape, generator=g))
    return gen, steer


def logits(lm, gen) -> torch.Tensor:
    tokens = torch.randint(0, gen.lm.cfg.cardinality, (1, gen.lm.cfg.num_codebooks, 6), generator=torch.Generator())
    with torch.no_grad():
        return lm(tokens, gen.encode_text(["calm piano"]))


def test_scopes_select_all_attention_or_heads():
    lm = debug_generator().lm
    assert conditioned_names(lm, "all") == [n for n, _ in lm.named_parameters()]
    assert all("_attn." in n for n in conditioned_names(lm, "attention"))
    assert conditioned_names(lm, "logits") == ["heads.weight"]
    with pytest.raises(InputError, match="scope"):
        conditioned_names(lm, "everything")


def test_weights_are_normalised_and_checked():
    _, steer = perturbed()
    assert steer.normalise({"adherence": 3, "quality": 1}) == {"adherence": 0.75, "quality": 0.25}
    assert steer.normalise({"quality": 2}) == {"adherence": 0.0, "quality": 1.0}
    for bad, message in [({"taste": 1}, "unknown objective"), ({"adherence": -1, "quality": 2}, ">= 0"),
                         ({"adherence": 0}, "> 0"), ({"adherence": float("nan")}, ">= 0")]:
        with pytest.raises(InputError, match=message):
            steer.normalise(bad)


def test_set_weights_mixes_the_parameter_sets_by_hand():
    _, steer = perturbed()
    name = steer.names[3]
    a, q = steer.experts["adherence"][3].detach(), steer.experts["quality"][3].detach()
    steer.set_weights({"adherence": 0.25, "quality": 0.75})
    assert torch.allclose(dict(steer.lm.named_parameters())[name], 0.25 * a + 0.75 * q)


def test_two_weights_give_different_logits_and_the_same_weights_reproduce():
    gen, steer = perturbed()
    torch.manual_seed(0)
    x = logits(steer.materialise({"adherence": 1.0}), gen)
    torch.manual_seed(0)
    y = logits(steer.materialise({"quality": 1.0}), gen)
    torch.manual_seed(0)
    z = logits(steer.materialise({"adherence": 2.0, "quality": 0.0}), gen)
    assert (x - y).abs().max() > 1e-3
    assert torch.equal(x, z)


def test_gradients_route_to_each_set_scaled_by_its_weight():
    gen, steer = perturbed()
    steer.set_weights({"adherence": 0.2, "quality": 0.8})
    torch.manual_seed(0)
    logits(steer.lm, gen)  # warm: same random tokens below
    torch.manual_seed(0)
    tokens = torch.randint(0, gen.lm.cfg.cardinality, (1, gen.lm.cfg.num_codebooks, 6), generator=torch.Generator())
    steer.lm(tokens, gen.encode_text(["calm piano"])).square().mean().backward()
    grads = {n: p.grad.clone() for n, p in steer.lm.named_parameters()}
    steer.route_gradients()
    for j, name in enumerate(steer.names):
        assert torch.allclose(steer.experts["adherence"][j].grad, 0.2 * grads[name])
        assert torch.allclose(steer.experts["quality"][j].grad, 0.8 * grads[name])
        assert dict(steer.lm.named_parameters())[name].grad is None


def test_rewarded_soups_are_the_same_object_as_weight_interpolation():
    gen_a, gen_b = debug_generator(), debug_generator()
    with torch.no_grad():
        for p in gen_b.lm.parameters():
            p.add_(0.1)
    soup = SteerableLM.from_models({"adherence": gen_a.lm, "quality": gen_b.lm})
    mixed = soup.materialise({"adherence": 0.3, "quality": 0.7}).state_dict()
    expected = lerp(gen_a.lm.state_dict(), gen_b.lm.state_dict(), 0.7)
    for key, value in expected.items():
        assert torch.allclose(mixed[key].float(), value.float(), atol=1e-6), key


def test_save_and_load_round_trip_and_steered_generators_differ(tmp_path):
    gen, steer = perturbed()
    steer.set_weights({"adherence": 1, "quality": 1})
    save_checkpoint(gen, tmp_path / "m")
    steer.save(tmp_path / "m")
    assert is_steerable(tmp_path / "m") and not is_steerable(tmp_path)
    loaded_gen, loaded = load_steerable(tmp_path / "m")
    assert loaded.objectives == ("adherence", "quality") and loaded.scope == "all"
    for obj in loaded.objectives:
        for p, q in zip(loaded.experts[obj], steer.experts[obj], strict=True):
            assert torch.equal(p, q)
    plain = load_checkpoint(tmp_path / "m")  # any tool loads it: the uniform-w model
    assert torch.allclose(plain.lm.heads.weight, steer.materialise({"adherence": 1, "quality": 1}).heads.weight)
    a = steered(loaded_gen, loaded, {"adherence": 0.9, "quality": 0.1})
    b = steered(loaded_gen, loaded, {"adherence": 0.1, "quality": 0.9})
    assert a.checkpoint_hash != b.checkpoint_hash and "adherence=0.9" in a.name and a.meta["steer"]["quality"] == 0.1
    with pytest.raises(InputError, match="not a steerable model"):
        load_steerable(tmp_path)
    (tmp_path / "m" / "steerable.safetensors").write_bytes(b"garbage")
    with pytest.raises(InputError):
        load_steerable(tmp_path / "m")


def test_drawn_weights_lie_on_the_simplex_and_depend_on_seed_and_step_only():
    names = ["adherence", "quality", "diversity"]
    w = clp.draw_weights(names, seed=1, step=5)
    assert sum(w.values()) == pytest.approx(1.0) and all(v >= 0 for v in w.values())
    assert w == clp.draw_weights(names, seed=1, step=5) and w != clp.draw_weights(names, seed=1, step=6)
    draws = torch.tensor([list(clp.draw_weights(names, 0, s).values()) for s in range(3000)])
    assert draws.mean(0).tolist() == pytest.approx([1 / 3] * 3, abs=0.03)  # Dirichlet(1, 1, 1): mean 1/3 each
    assert clp.validation_weights(["a", "b"]) == [{"a": 1.0, "b": 0.0}, {"a": 0.0, "b": 1.0}, {"a": 0.5, "b": 0.5}]


@pytest.fixture()
def args(tmp_path, embedder_dir):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("calm piano\nfast techno\nsad violin\nloud rock\n")
    return ["model=debug", f"prompts={prompts}", f"embedder={embedder_dir}", f"out={tmp_path / 'run'}",
            "corpus=/nonexistent", "duration=0.3", "prompts_per_step=2", "samples_per_prompt=2", "eval_prompts=2",
            "lr=1e-3", "judges=none", "objectives=adherence,diversity"]


def config(args, *more) -> clp.Config:
    return load_config(clp.Config, None, [*args, *more])


@pytest.mark.parametrize(("more", "message"), [
    (["objectives=adherence"], "2 or more"),
    (["objectives=adherence,judges"], "cannot train"),
    (["objectives=adherence,preference"], "reward_model"),
    (["scope=everything"], "scope"),
    (["samples_per_prompt=1"], "samples_per_prompt"),
])
def test_refused_configs_write_nothing(args, tmp_path, more, message):
    with pytest.raises(InputError, match=message):
        clp.main(config(args, *more))
    assert not (tmp_path / "run").exists()


def test_step_trains_each_set_by_its_weight(args):
    state = clp.setup(config(args))
    batch = clp.next_batch(state)
    batch.weights = {"adherence": 1.0, "diversity": 0.0}
    before = {obj: [p.detach().clone() for p in state.steer.experts[obj]] for obj in state.steer.objectives}
    metrics = clp.step(state, batch)
    assert metrics["w_adherence"] == 1.0 and metrics["kl"] == pytest.approx(0.0, abs=1e-5)
    moved = [not torch.equal(p, q) for p, q in zip(state.steer.experts["adherence"], before["adherence"], strict=True)]
    still = [torch.equal(p, q) for p, q in zip(state.steer.experts["diversity"], before["diversity"], strict=True)]
    assert any(moved) and all(still)  # w_diversity = 0: its set gets a zero gradient (AdamW, no decay: no move)


def test_run_validates_at_each_vertex_saves_a_steerable_model_and_resumes(args, tmp_path):
    out = tmp_path / "run"
    clp.main(config(args, "steps=2", "eval_every=2", "save_every=1", "log_every=1"))
    summary = clp.main(config(args, "steps=3", "eval_every=3", "save_every=1", "log_every=1"))
    assert summary["step"] == 3 and summary["scope"] == "all"
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [1, 2, 3] and all("w_adherence" in r for r in log)
    val = [json.loads(line) for line in (out / "validation.jsonl").read_text().splitlines()]
    assert [(r["step"], r["weights"]["adherence"]) for r in val] == [
        (s, a) for s in (0, 2, 3) for a in (1.0, 0.0, 0.5)]
    gen, steer = load_steerable(out / "model")
    assert steer.objectives == ("adherence", "diversity")
    x = logits(steer.materialise({"adherence": 1.0}), gen)
    y = logits(steer.materialise({"diversity": 1.0}), gen)
    assert (x - y).abs().max() > 0


def test_two_processes_equal_one(args, tmp_path):
    from tests.test_distributed import torchrun, weights

    more = ["steps=2", "eval_every=2", "log_every=1", "seed=3"]
    clp.main(config(args, *more, f"out={tmp_path / 'one'}"))
    two = [a for a in args if not a.startswith("out=")]
    torchrun(2, ["clp", *two, *more, f"out={tmp_path / 'two'}"])
    one_w, two_w = weights(tmp_path / "one", "steerable"), weights(tmp_path / "two", "steerable")
    start = SteerableLM(debug_generator().lm, ("adherence", "diversity")).state_dict()
    assert one_w.keys() == two_w.keys()
    for key in one_w:
        if not key.startswith("experts."):
            continue
        update = (one_w[key] - start[key]).norm()
        assert (one_w[key] - two_w[key]).norm() <= 0.1 * update + 1e-7, key
