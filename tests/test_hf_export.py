"""``musicrl export --format hf``: our models back in transformers' MusicGen layout (models.hf_export)."""

import json

import pytest
import torch

from models.checkpoint import load_checkpoint, save_checkpoint
from models.debug import debug_lm_config, save_tiny_hf_musicgen
from models.delay import build_delayed, lm_inputs
from models.errors import InputError
from models.hf_export import export_hf_musicgen, layout_problems
from models.lm import TextStates
from models.registry import load_generator
from musicrl.cli import main

PROMPTS = ["jazz piano with drums", "dark techno bass in a minor key"]


@pytest.fixture(scope="module", params=["projected", "same-width"])
def hf_dir(request, tiny_hf_dir, tmp_path_factory):
    """text hidden size 24 != decoder 32 (enc_to_dec_proj), or 32 == 32 (no projection)."""
    if request.param == "projected":
        return tiny_hf_dir
    return save_tiny_hf_musicgen(tmp_path_factory.mktemp("tiny_same_width") / "model", seed=1, text_dim=32)


def _hf(path):
    from transformers import AutoTokenizer, MusicgenForConditionalGeneration

    model = MusicgenForConditionalGeneration.from_pretrained(path, use_safetensors=True, local_files_only=True)
    return model.eval(), AutoTokenizer.from_pretrained(path, local_files_only=True)


@torch.no_grad()
def _theirs_and_ours(path, gen):
    """transformers' logits of the directory at ``path`` and ``gen``'s, conditioned and null: [2, B, K, S, V]."""
    hf, tokenizer = _hf(path)
    k, v = gen.lm.cfg.num_codebooks, gen.lm.cfg.cardinality
    codes = torch.randint(0, v, (2, k, 10), generator=torch.Generator().manual_seed(3))
    inputs = lm_inputs(build_delayed(codes, v), v)
    enc = tokenizer(PROMPTS, padding=True, return_tensors="pt")
    flat = inputs.reshape(2 * k, -1)
    theirs = torch.stack([
        hf(**enc, decoder_input_ids=flat).logits,
        hf(input_ids=enc.input_ids, attention_mask=torch.zeros_like(enc.attention_mask), decoder_input_ids=flat).logits,
    ]).reshape(2, 2, k, -1, v)
    text = gen.encode_text(PROMPTS)
    null = TextStates(torch.zeros_like(text.states[:, :1]), torch.zeros(2, 1, dtype=torch.bool))
    return theirs, torch.stack([gen.lm(inputs, text), gen.lm(inputs, null)])


def test_hf_dir_round_trips_to_the_same_weights(hf_dir, tmp_path):
    """HF dir -> our generator -> export: every tensor transformers saved comes back bit for bit."""
    from safetensors.torch import load_file

    result = export_hf_musicgen(load_generator(hf_dir), tmp_path / "out")
    assert result.max_abs_diff is not None and result.max_abs_diff <= 1e-4
    theirs, ours = load_file(hf_dir / "model.safetensors"), load_file(tmp_path / "out" / "model.safetensors")
    assert sorted(theirs) == sorted(ours)
    assert all(torch.equal(theirs[name], ours[name]) for name in theirs)
    from transformers import AutoProcessor

    assert type(AutoProcessor.from_pretrained(tmp_path / "out")).__name__ == "MusicgenProcessor"


def test_changed_checkpoint_exports_its_own_logits(hf_dir, tmp_path, capsys):
    """HF dir -> our generator, one LM weight changed -> musicrl checkpoint -> musicrl export -> transformers
    gives our logits within 1e-4 (conditioned and null), and not the original model's: the weights come from
    our LM, not from the HF directory the lineage started at."""
    gen = load_generator(hf_dir)
    with torch.no_grad():
        gen.lm.layers[0].fc1.weight.add_(0.5 * torch.randn(gen.lm.layers[0].fc1.weight.shape,
                                                           generator=torch.Generator().manual_seed(0)))
        gen.lm.heads.weight.mul_(1.5)
    ckpt, out = tmp_path / "ckpt", tmp_path / "out"
    save_checkpoint(gen, ckpt, lineage={"recipe": "rl", "parents": [gen.checkpoint_hash]})
    assert main(["export", str(ckpt), "--format", "hf", "--out", str(out)]) == 0
    assert "verified" in capsys.readouterr().out
    ours_gen = load_checkpoint(ckpt)
    theirs, ours = _theirs_and_ours(out, ours_gen)
    torch.testing.assert_close(theirs, ours, atol=1e-4, rtol=0)
    original, _ = _theirs_and_ours(hf_dir, ours_gen)
    assert (original - ours).abs().max() > 1e-2
    hf, _ = _hf(out)
    assert (getattr(hf, "enc_to_dec_proj", None) is not None) == (hf.config.text_encoder.hidden_size != 32)
    record = json.loads((out / "musicrl_lineage.json").read_text())
    assert record["source_hash"] == ours_gen.checkpoint_hash
    assert record["source_lineage"]["recipe"] == "rl"
    assert record["verify"]["max_abs_logit_diff"] <= 1e-4
    back = load_generator(out)  # and it loads back into musicrl as a Hugging Face directory
    torch.testing.assert_close(_theirs_and_ours(out, back)[1], ours, atol=1e-4, rtol=0)


@pytest.mark.parametrize(
    "model, why",
    [("default", "text conditioner is 'minilm'.*codec is 'spectral'"), ("debug", "text conditioner is 'debug'")],
)
def test_models_without_a_musicgen_layout_are_refused(model, why, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["export", model, "--format", "hf", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "cannot export" in err
    import re

    assert re.search(why, err)
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_layout_problems_by_hand():
    t5 = {"type": "t5"}
    encodec = {"type": "encodec", "num_codebooks": 4, "cardinality": 64}
    assert layout_problems(t5, encodec, debug_lm_config()) == []
    assert layout_problems(t5, {**encodec, "num_codebooks": 8}, debug_lm_config()) == [
        "its codec's codebooks do not match the LM's"
    ]
    (eps,) = layout_problems(t5, encodec, debug_lm_config(layer_norm_eps=1e-6))
    assert "LayerNorm eps is 1e-06" in eps


def test_existing_out_is_refused_unless_overwrite(tiny_hf_dir, tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    assert main(["export", str(tiny_hf_dir), "--out", str(out)]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert [p.name for p in out.iterdir()] == ["keep.txt"]
    (tmp_path / "file").write_text("x")
    assert main(["export", str(tiny_hf_dir), "--out", str(tmp_path / "file")]) == 2
    assert main(["export", str(tiny_hf_dir), "--out", str(out), "--overwrite", "--no-verify"]) == 0
    assert "not verified" in capsys.readouterr().out
    assert (out / "model.safetensors").is_file() and not (out / "keep.txt").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file", "out"]  # no temp or .old directory left


def test_failed_verification_writes_nothing(tiny_hf_dir, tmp_path, monkeypatch):
    import models.hf_export as hf_export

    monkeypatch.setattr(hf_export, "VERIFY_TOLERANCE", -1.0)
    with pytest.raises(InputError, match="export check failed.*nothing was written"):
        export_hf_musicgen(load_generator(tiny_hf_dir), tmp_path / "out")
    assert list(tmp_path.iterdir()) == []
