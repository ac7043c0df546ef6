"""Finetuning the LM from an init (``musicrl train lm init=...``): LoRA through peft, full finetuning, the
data/model check, resume, ``musicrl merge BASE ADAPTER``, torchrun. Debug models, seconds each."""

from __future__ import annotations

import copy
import json

import pytest
import torch

from models.checkpoint import load_checkpoint, save_checkpoint
from models.debug import debug_generator
from models.errors import InputError
from models.lm import AudioLM, TextStates
from musicrl.cli import main as cli
from musicrl.config import load_config
from musicrl.lm_data import model_identity, write_token_data
from musicrl.lora import LoraSettings, adapter_state, apply_lora, lora_layers, merged_state
from musicrl.recipes import lm as lm_recipe
from tests.test_distributed import torchrun, weights

RUN = ["batch_size=4", "lr=1e-2", "warmup=1", "eval_every=100", "eval_batches=1", "log_every=1", "cond_dropout=0.2"]


def token_dir(path, gen, n: int = 10, frames: int = 12, attributes: list[dict] | None = None):
    """n clips of random codes (2 held out) recorded as made with ``gen``, with the clips' labels when given."""
    g = torch.Generator().manual_seed(0)
    states = [torch.randn(2 + i % 3, gen.lm.cfg.cond_dim, generator=g) for i in range(n)]
    meta = {"ids": [f"f{i // 2}.wav#{i % 2}" for i in range(n)], "splits": ["train"] * (n - 2) + ["valid"] * 2}
    meta.update(captions=[f"clip {i}" for i in range(n)], attributes=attributes or [{}] * n, model=model_identity(gen))
    write_token_data(path, torch.randint(0, gen.lm.cfg.cardinality, (n, 4, frames), generator=g), states, meta)
    return path


@pytest.fixture(scope="module")
def tokens(tmp_path_factory):
    return token_dir(tmp_path_factory.mktemp("tokens"), debug_generator(seed=0))


def config(tokens, out, *extra):
    return load_config(lm_recipe.Config, None, [f"data={tokens}", f"out={out}", "init=debug", *RUN, *extra])


def test_lora_step_changes_only_the_adapters(tokens, tmp_path):
    state = lm_recipe.setup(config(tokens, tmp_path / "r", "lora.rank=4", "steps=2"))
    before = {k: v.clone() for k, v in state.lm.state_dict().items()}
    trained = {n for n, p in state.lm.named_parameters() if p.requires_grad}
    assert trained and all(".lora_A." in n or ".lora_B." in n for n in trained)
    assert len(lora_layers(state.lm)) == 2 * 7  # qkv, out, q, kv, out, fc1, fc2 in each of 2 layers
    metrics = lm_recipe.step(state, lm_recipe.next_batch(state))
    assert torch.isfinite(torch.tensor(metrics["loss"]))
    after = state.lm.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed and all(".lora_" in k for k in changed)
    assert any(".lora_B." in k for k in changed)  # B starts at zero and moves


def test_merged_model_equals_base_plus_adapter_and_peft_forward():
    gen = debug_generator(seed=0)
    lm = apply_lora(copy.deepcopy(gen.lm), LoraSettings(rank=3, alpha=6.0, dropout=0.0))
    with torch.no_grad():  # B = 0 at the start: give the adapters a delta to merge
        for name, p in lm.named_parameters():
            if ".lora_B." in name:
                p.copy_(torch.randn_like(p) * 0.1)
    lm.eval()
    plain = AudioLM(gen.lm.cfg).eval()
    plain.load_state_dict(merged_state(lm))
    tokens = torch.randint(0, 64, (2, 4, 9))
    text = TextStates(torch.randn(2, 5, 16), torch.tensor([[True] * 5, [True, True, False, False, False]]))
    torch.testing.assert_close(plain(tokens, text), lm(tokens, text), atol=1e-5, rtol=0)  # peft's LoRA forward
    # by hand for one layer: W + (alpha / r) B @ A
    layer = lm.layers[0].fc1
    delta = 2.0 * layer.lora_B["default"].weight @ layer.lora_A["default"].weight
    torch.testing.assert_close(plain.layers[0].fc1.weight, gen.lm.layers[0].fc1.weight + delta)
    # lam = 0 is the base; the injected model is not changed by merging
    for key, value in merged_state(lm, 0.0).items():
        torch.testing.assert_close(value, gen.lm.state_dict()[key])
    assert len(adapter_state(lm)) == 2 * 7 * 2


def test_lora_run_exports_adapter_and_merged_model_and_resumes(tokens, tmp_path):
    out = tmp_path / "lora"
    lm_recipe.main(config(tokens, out, "lora.rank=4", "lora.dropout=0.0", "steps=2", "save_every=1"))
    adapter_cfg = json.loads((out / "adapter" / "adapter_config.json").read_text())
    assert adapter_cfg["r"] == 4 and adapter_cfg["musicrl"]["base_hash"] == "debug-0"
    model = load_checkpoint(out / "model")
    assert model.meta["lineage"]["parents"] == ["debug-0"] and model.meta["lineage"]["recipe"] == "lm"
    state = json.loads((out / "state" / "state.json").read_text())
    saved = weights(out, "adapter")
    assert saved and all(".lora_" in k for k in saved) and state["step"] == 2
    assert not weights(out, "lm")  # the frozen base is not in the train state
    summary = json.loads((out / "metrics.json").read_text())
    assert summary["before"]["step"] == 0 and summary["after"]["step"] == 2
    assert summary["after"]["val_nll"] < summary["before"]["val_nll"]
    log = [json.loads(x) for x in (out / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log if "val_nll" in r] == [0, 2]
    # a run stopped after its first step (time limit) resumes from its adapters on the reloaded base
    stopped = tmp_path / "stopped"
    lm_recipe.main(config(tokens, stopped, "lora.rank=4", "steps=3", "time_limit_min=1e-9"))
    saved = weights(stopped, "adapter")
    assert json.loads((stopped / "state" / "state.json").read_text())["step"] == 1
    resumed = lm_recipe.setup(config(tokens, stopped, "lora.rank=4", "steps=3"))
    assert resumed.step == 1 and resumed.first_val["step"] == 0
    assert all(torch.equal(v, saved[k]) for k, v in adapter_state(resumed.lm).items())
    resumed.log.truncate_after(1)
    lm_recipe.main(config(tokens, stopped, "lora.rank=4", "steps=3"))
    steps = [json.loads(x)["step"] for x in (stopped / "log.jsonl").read_text().splitlines()]
    assert steps == [0, 1, 1, 2, 3, 3]  # validation 0, step 1, validation at the stop, steps 2 and 3, validation
    assert json.loads((stopped / "metrics.json").read_text())["before"]["step"] == 0
    # musicrl merge BASE ADAPTER = the recipe's merged model; lam 0 = the base
    assert cli(["merge", "debug", str(out / "adapter"), "--out", str(tmp_path / "m")]) == 0
    merged, exported = load_checkpoint(tmp_path / "m").lm.state_dict(), load_checkpoint(out / "model").lm.state_dict()
    for k, v in merged.items():
        torch.testing.assert_close(v, exported[k], atol=1e-6, rtol=0)
    assert cli(["merge", "debug", str(out / "adapter"), "--lam", "0", "--out", str(tmp_path / "z")]) == 0
    base = debug_generator(seed=0).lm.state_dict()
    assert all(torch.equal(v, base[k]) for k, v in load_checkpoint(tmp_path / "z").lm.state_dict().items())
    lineage = json.loads((tmp_path / "m" / "musicrl.json").read_text())["lineage"]
    assert lineage["merge"]["method"] == "lora" and lineage["parents"] == ["debug-0"]


def test_merge_refuses_an_adapter_of_another_base(tokens, tmp_path, capsys):
    out = tmp_path / "lora"
    lm_recipe.main(config(tokens, out, "lora.rank=2", "steps=1"))
    other = save_checkpoint(debug_generator(seed=1), tmp_path / "other")
    assert cli(["merge", str(other), str(out / "adapter"), "--out", str(tmp_path / "m")]) == 2
    assert "was trained on debug (debug-0)" in capsys.readouterr().err and not (tmp_path / "m").exists()
    assert cli(["merge", "debug", str(out / "adapter"), "--lam", "3", "--out", str(tmp_path / "m")]) == 2


def test_full_finetune_from_a_tiny_init_saves_a_checkpoint_that_finetunes_again(tokens, tmp_path):
    out = tmp_path / "full"
    lm_recipe.main(config(tokens, out, "lora.rank=0", "steps=3"))
    init, tuned = debug_generator(seed=0), load_checkpoint(out / "model")
    assert not (out / "adapter").exists() and set(weights(out, "lm")) == set(init.lm.state_dict())
    assert all(not torch.equal(v, tuned.lm.state_dict()[k]) for k, v in init.lm.state_dict().items()
               if k.endswith("fc1.weight"))
    assert tuned.meta["lineage"]["parents"] == ["debug-0"] and tuned.meta["lineage"]["init"] == "debug"
    assert model_identity(tuned)["codec_fingerprint"] == model_identity(init)["codec_fingerprint"]
    # resume: a full run stopped after step 1 goes on from its saved weights
    stopped = tmp_path / "stopped"
    lm_recipe.main(config(tokens, stopped, "lora.rank=0", "steps=2", "time_limit_min=1e-9"))
    saved = weights(stopped, "lm")
    resumed = lm_recipe.setup(config(tokens, stopped, "lora.rank=0", "steps=2"))
    assert resumed.step == 1 and all(torch.equal(v, saved[k]) for k, v in resumed.lm.state_dict().items())
    # the finetuned checkpoint keeps the codec and encoder: the same data finetunes it again
    again = load_config(lm_recipe.Config, None, [f"data={tokens}", f"out={tmp_path / 'again'}",
                                                 f"init={out / 'model'}", *RUN, "steps=1"])
    lm_recipe.main(again)
    assert (tmp_path / "again" / "model" / "musicrl.json").is_file()


def test_data_of_another_model_is_refused_before_anything_is_written(tmp_path):
    other = token_dir(tmp_path / "other", debug_generator(seed=1))  # same sizes, another codec
    for extra in (["lora.rank=4"], ["lora.rank=0"]):
        out = tmp_path / f"refused{extra[0]}"
        with pytest.raises(InputError, match="codec fingerprint differs"):
            lm_recipe.main(config(other, out, *extra, "steps=1"))
        assert not out.exists()
    long = token_dir(tmp_path / "long", debug_generator(seed=0), frames=1030)  # debug LM: 1024 positions
    with pytest.raises(InputError, match="shorter --segment"):
        lm_recipe.main(config(long, tmp_path / "long_run", "steps=1"))
    assert not (tmp_path / "long_run").exists()
    with pytest.raises(InputError, match="lora.rank"):
        lm_recipe.main(config(other, tmp_path / "neg", "lora.rank=-1"))


def test_lora_two_processes_equal_one(tokens, tmp_path):
    args = [f"data={tokens}", "init=debug", *RUN, "lora.rank=4", "lora.dropout=0.0", "steps=2"]
    lm_recipe.main(load_config(lm_recipe.Config, None, [*args, f"out={tmp_path / 'one'}"]))
    torchrun(2, ["lm", *args, f"out={tmp_path / 'two'}"])
    one, two = weights(tmp_path / "one", "adapter"), weights(tmp_path / "two", "adapter")
    assert one.keys() == two.keys()
    for k in one:
        torch.testing.assert_close(one[k], two[k], rtol=1e-4, atol=2e-5)
    assert (tmp_path / "two" / "adapter" / "adapter_model.safetensors").is_file()


def test_hf_musicgen_import_finetune_and_again(tiny_hf_dir, tmp_path):
    """A (tiny random) Hugging Face MusicGen: its T5 and EnCodec tokenise, LoRA finetunes it, and the merged
    checkpoint (T5 + EnCodec saved with it) is recognised as the same codec and encoder."""
    import numpy as np
    import soundfile as sf

    from musicrl.audio_import import ImportConfig, import_audio
    from musicrl.lm_data import TokenData

    src = tmp_path / "audio"
    src.mkdir()
    for i in range(3):
        sf.write(src / f"t{i}.wav", 0.3 * np.sin(np.arange(16000) * (0.05 + 0.02 * i)).astype(np.float32), 16000)
    (src / "c.jsonl").write_text("".join(json.dumps({"file": f"t{i}.wav", "caption": "fast techno drums"}) + "\n"
                                         for i in range(3)))
    data = tmp_path / "tokens"
    import_audio(ImportConfig(src, src / "c.jsonl", data, str(tiny_hf_dir), segment=0.5, valid_share=0.34),
                 progress=False)
    assert TokenData.load(data).meta["model"]["codec"]["type"] == "encodec"
    args = [f"data={data}", *RUN, "batch_size=2", "lora.rank=2", "steps=1"]
    lm_recipe.main(load_config(lm_recipe.Config, None, [*args, f"init={tiny_hf_dir}", f"out={tmp_path / 'a'}"]))
    lm_recipe.main(load_config(lm_recipe.Config, None, [*args, f"init={tmp_path / 'a' / 'model'}",
                                                        f"out={tmp_path / 'b'}"]))
    assert (tmp_path / "b" / "adapter" / "adapter_model.safetensors").is_file()
