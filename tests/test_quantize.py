"""int8 LM weights for CPU serving (models.quantize): ``int8:SPEC`` everywhere a model is named."""

import json

import pytest
import torch

from app.registry import ModelRegistry
from models.debug import debug_generator
from models.delay import build_delayed, lm_inputs
from models.errors import InputError
from models.quantize import logit_error, quantize_int8, split_spec
from models.registry import load_generator
from models.sampling import SamplingParams
from musicrl.cli import main

# The documented error of the debug LM's int8 logits on random codes (docs/BENCHMARKS.md reports the default's).
MAX_ABS, MEAN_ABS, ARGMAX_CHANGED = 0.1, 0.02, 0.05


def _inputs(gen, batch: int = 3, frames: int = 12):
    k, v = gen.lm.cfg.num_codebooks, gen.lm.cfg.cardinality
    codes = torch.randint(0, v, (batch, k, frames), generator=torch.Generator().manual_seed(0))
    return lm_inputs(build_delayed(codes, v), v), gen.encode_text(["calm piano", "fast techno drums", "x"][:batch])


def test_split_spec():
    assert split_spec("int8:default") == ("int8", "default") and split_spec("runs/x") == ("", "runs/x")


def test_int8_logits_stay_within_the_documented_error_and_the_float_model_is_untouched():
    gen = debug_generator()
    before = {k: v.clone() for k, v in gen.lm.state_dict().items()}
    q = quantize_int8(gen.lm)
    tokens, text = _inputs(gen)
    err = logit_error(gen.lm, q, tokens, text)
    assert 0 < err["max_abs"] < MAX_ABS and err["mean_abs"] < MEAN_ABS and err["argmax_changed"] < ARGMAX_CHANGED
    assert all(torch.equal(before[k], v) for k, v in gen.lm.state_dict().items()) and not gen.lm.quantized
    assert q.quantized == "int8" and quantize_int8(q) is q
    assert not any(p.requires_grad for p in q.parameters())


@torch.no_grad()
def test_int8_decoding_step_uses_the_int8_modules_within_the_documented_error():
    """The step calls the int8 modules (they hold no float weight): its logits differ from the float step's
    by quantization error only, at every position."""
    gen = debug_generator()
    q = quantize_int8(gen.lm)
    tokens, text = _inputs(gen, batch=2)
    caches = [lm.start_decoding(text, 2, tokens.shape[-1]) for lm in (gen.lm, q)]
    diffs, changed = [], []
    for s in range(tokens.shape[-1]):
        a, b = (lm.step(tokens[:, :, s], s, c) for lm, c in zip((gen.lm, q), caches, strict=True))
        diffs.append((a - b).abs().max())
        changed.append((a.argmax(-1) != b.argmax(-1)).float().mean())
    assert 0 < max(diffs) < MAX_ABS and float(torch.stack(changed).mean()) < ARGMAX_CHANGED


def test_int8_spec_loads_a_quantized_generator_that_generates(tmp_path):
    gen = load_generator("int8:debug")
    assert gen.lm.quantized == "int8" and gen.name == "int8:debug" and gen.meta["quantized"] == "int8"
    assert gen.checkpoint_hash == f"{debug_generator().checkpoint_hash}+int8"
    out = gen.generate(["calm piano"], 0.2, SamplingParams(cfg=3.0), seeds=0)
    assert out.audio.shape[0] == 1 and torch.isfinite(out.audio).all()
    assert main(["generate", "calm piano", "--model", "int8:debug", "--duration", "0.2", "--out", str(tmp_path)]) == 0
    assert json.loads(next(tmp_path.glob("*.json")).read_text())["model"] == "int8:debug"
    assert main(["generate", "x", "--model", "int8:/no/such/dir", "--out", str(tmp_path / "o")]) == 2


def test_registry_entries_take_int8_paths_but_never_merge_or_steer_them(tmp_path):
    (tmp_path / "ckpt").mkdir()
    path = tmp_path / "registry.yaml"
    path.write_text("models:\n  - {id: q, name: Q, path: int8:ckpt}\n  - {id: d, name: D, path: int8:debug}\n")
    entries = ModelRegistry.from_file(path).entries
    assert [e.path for e in entries] == [f"int8:{tmp_path / 'ckpt'}", "int8:debug"]
    path.write_text("models:\n  - {id: q, name: Q, path: int8:debug}\n  - {id: f, name: F, path: debug}\n"
                    "  - {id: m, name: M, merge: {a: q, b: f}}\n")
    with pytest.raises(InputError, match="int8 weights, which do not interpolate"):
        ModelRegistry.from_file(path)
    path.write_text("models:\n  - {id: s, name: S, path: int8:debug, steerable: true}\n")
    with pytest.raises(InputError, match="steerable entry cannot have int8"):
        ModelRegistry.from_file(path)


def test_bench_int8_reports_speed_and_error(capsys):
    assert main(["bench", "int8", "--model", "debug", "--batches", "1", "--repeats", "1", "--duration", "0.2"]) == 0
    out = capsys.readouterr().out
    assert "int8" in out and "argmax changed at" in out
