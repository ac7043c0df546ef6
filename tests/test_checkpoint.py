import json

import pytest
import torch

from models.checkpoint import load_checkpoint, save_checkpoint
from models.errors import InputError
from models.registry import load_generator
from models.sampling import SamplingParams


def test_round_trip_rebuilds_the_same_generator(debug_gen, tmp_path):
    path = save_checkpoint(debug_gen, tmp_path / "ckpt", lineage={"parents": ["abc"], "step": 7, "recipe": "test"})
    loaded = load_checkpoint(path)
    for (k, a), (_, b) in zip(debug_gen.lm.state_dict().items(), loaded.lm.state_dict().items(), strict=True):
        assert torch.equal(a, b), k
    p = SamplingParams()
    a = debug_gen.generate(["techno"], 0.3, p, seeds=3)
    b = loaded.generate(["techno"], 0.3, p, seeds=3)
    assert torch.equal(a.codes, b.codes) and torch.equal(a.audio, b.audio)
    assert loaded.meta["lineage"] == {"parents": ["abc"], "step": 7, "recipe": "test"}
    assert len(loaded.checkpoint_hash) == 16
    # the registry resolves the same directory
    assert load_generator(path).checkpoint_hash == loaded.checkpoint_hash


def test_overwrite_is_atomic_and_leaves_no_temp_dirs(debug_gen, tmp_path):
    save_checkpoint(debug_gen, tmp_path / "c")
    save_checkpoint(debug_gen, tmp_path / "c", lineage={"step": 2})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c"]
    assert json.loads((tmp_path / "c" / "musicrl.json").read_text())["lineage"]["step"] == 2


def test_pickle_only_checkpoint_is_refused(debug_gen, tmp_path):
    path = save_checkpoint(debug_gen, tmp_path / "c")
    (path / "lm.safetensors").unlink()
    torch.save(debug_gen.lm.state_dict(), path / "lm.bin")
    with pytest.raises(InputError, match="pickle"):
        load_checkpoint(path)


def test_corrupt_weights_and_config(debug_gen, tmp_path):
    path = save_checkpoint(debug_gen, tmp_path / "c")
    (path / "lm.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(InputError):
        load_checkpoint(path)
    (path / "musicrl.json").write_text("{broken")
    with pytest.raises(InputError):
        load_checkpoint(path)


def test_mismatched_config_is_refused(debug_gen, tmp_path):
    path = save_checkpoint(debug_gen, tmp_path / "c")
    meta = json.loads((path / "musicrl.json").read_text())
    assert meta["format"] == "musicrl" and meta["kind"] == "generator" and meta["version"] == 2
    meta["config"]["lm"]["dim"] = 64
    meta["config"]["lm"]["ffn_dim"] = 128
    (path / "musicrl.json").write_text(json.dumps(meta))
    with pytest.raises(InputError, match="does not match"):
        load_checkpoint(path)


@pytest.mark.parametrize("spec", ["no-such-model", "/nonexistent/dir"])
def test_unknown_model(spec):
    with pytest.raises(InputError):
        load_generator(spec)


def test_directory_without_model(tmp_path):
    with pytest.raises(InputError, match="not a model directory"):
        load_generator(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "bert"}))
    with pytest.raises(InputError, match="not a MusicGen"):
        load_generator(tmp_path)


def test_every_module_file_is_one_self_describing_format(tmp_path):
    """The shipped files (version 1: three header styles) load; what we write now is version 2 with
    format, kind, version, config and lineage; a header of another kind is refused."""
    from models.audio_tower import FrontendConfig, TowerConfig
    from models.module_io import read_header
    from models.quality import QualityConfig, QualityModel
    from models.registry import ASSETS_DIR
    from models.spectral_codec import SpectralCodec, SpectralCodecConfig

    for kind, stem, folder in [
        ("embedder", "embedder", "embedder"),
        ("quality", "quality", "quality"),
        ("judges", "judges", "judges"),
        ("spectral-codec", "codec", "default/codec"),
        ("generator", "musicrl", "default"),
    ]:
        header = read_header(ASSETS_DIR / folder / f"{stem}.json", kind)
        assert header.kind == kind and header.version in (1, 2) and header.config  # shipped before or after v2
    assert read_header(ASSETS_DIR / "default" / "musicrl.json", "generator").lineage["recipe"] == "lm"
    tiny = QualityConfig(FrontendConfig(n_mels=8, chroma=False), TowerConfig(widths=[4], blocks=1, out=4))
    QualityModel(tiny).save(tmp_path / "q", lineage={"step": 3, "recipe": "quality"})
    meta = json.loads((tmp_path / "q" / "quality.json").read_text())
    assert sorted(meta) == ["config", "format", "kind", "lineage", "version"]
    assert (meta["format"], meta["kind"], meta["version"]) == ("musicrl", "quality", 2)
    assert meta["lineage"] == {"step": 3, "recipe": "quality"} and QualityModel.load(tmp_path / "q").cfg == tiny
    codec = SpectralCodec(SpectralCodecConfig(width=8, latent_dim=4, num_blocks=1, codebook_size=4))
    codec.save(tmp_path / "codec", lineage={"step": 5})
    assert SpectralCodec.load_with_header(tmp_path / "codec")[1].lineage == {"step": 5}
    with pytest.raises(InputError, match="not a 'embedder'"):
        read_header(tmp_path / "q" / "quality.json", "embedder")
