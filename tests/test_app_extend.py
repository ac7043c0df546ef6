"""The app's continuation: "Extend this clip" and an uploaded audio prompt (app/extend.py), through the services
and through a live server's API (upload checks, rate limit, the upload deleted once read)."""

from __future__ import annotations

import socket

import numpy as np
import pytest
import soundfile as sf
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError

from app.limits import Caller, Rate, RateLimited, RateLimits
from app.main import serve
from app.services import build_services
from models.errors import InputError
from models.long_form import SPLICE_FADE

REGISTRY = """
models:
  - {id: alpha, name: Alpha, path: debug}
"""
ME = Caller("session-1", "10.0.0.1")


def _tone(path, seconds=0.5, rate=22050, channels=1):
    t = np.arange(int(seconds * rate)) / rate
    wav = 0.3 * np.sin(2 * np.pi * 220 * t)
    sf.write(path, np.stack([wav] * channels, axis=1), rate)
    return path


@pytest.fixture(scope="module")
def services(tmp_path_factory):
    root = tmp_path_factory.mktemp("extend")
    (root / "registry.yaml").write_text(REGISTRY)
    limits = RateLimits(generate=(Rate(4, 60.0), Rate(100, 60.0)), pair=(Rate(0, 1.0), Rate(0, 1.0)),
                        vote=(Rate(0, 1.0), Rate(0, 1.0)), admin=(Rate(0, 1.0), Rate(0, 1.0)))
    built = build_services(registry=root / "registry.yaml", data_dir=root / "data", limits=limits)
    built.continuation.upload_root = root / "uploads"
    yield built
    built.close()


def test_extend_keeps_the_clip_and_adds_seconds(services):
    """A 0.5 s clip + 1 s: the new clip starts with the old one's samples, same model and settings, a new
    seed; extending the extension works too (its prompt is the last (10 - 6) s at most: here all of it)."""
    gen = services.generation
    clip = gen.generate("alpha", "calm piano", 0.5, cfg=2.0, temperature=0.9, top_k=50, seed=3)[0].clip
    out = services.continuation.extend(clip.id, 1.0).clip
    assert out.params["source"] == "extend" and out.params["continuation"]["prompt_file"] == clip.id
    assert (out.params["cfg"], out.params["temperature"], out.params["top_k"]) == (2.0, 0.9, 50)
    assert out.model_id == "alpha" and out.prompt == "calm piano" and out.checkpoint_hash == clip.checkpoint_hash
    assert out.duration == pytest.approx(1.5, abs=0.01)
    old, _ = sf.read(clip.audio_file, dtype="float32")
    new, _ = sf.read(out.audio_file, dtype="float32")
    keep = len(old) - round(SPLICE_FADE * clip.sample_rate)
    np.testing.assert_allclose(new[:keep], old[:keep], atol=1.5 / 32768)
    again = services.continuation.extend(out.id, 1.0).clip
    assert again.duration == pytest.approx(2.5, abs=0.01)


def test_extend_refuses_what_it_must(services, tmp_path):
    gen, cont = services.generation, services.continuation
    clip = gen.generate("alpha", "calm piano", 0.5, seed=1)[0].clip
    for clip_id, seconds, needle in [("", 1, "generate one first"), ("nope", 1, "unknown clip"),
                                     (clip.id, 0.5, "seconds to add"), (clip.id, 11, "seconds to add"),
                                     (clip.id, float("nan"), "seconds to add")]:
        with pytest.raises(InputError, match=needle):
            cont.extend(clip_id, seconds)
    arena_clip = gen.store_clips(gen.validate("alpha", "x", 0.2), gen.generate_batch([gen.validate("alpha", "x",
                                                                                                    0.2)])[0],
                                 source="arena")[0]
    with pytest.raises(InputError, match="Generate tab"):
        cont.extend(arena_clip.id, 1)
    cont.max_total_s, old = 1.0, cont.max_total_s
    try:
        with pytest.raises(InputError, match="extends clips up to 1 s"):
            cont.extend(clip.id, 1)
    finally:
        cont.max_total_s = old


def test_upload_is_continued_checked_and_deleted(services, tmp_path):
    """An upload inside the upload folder is read and deleted, good or bad; the clip starts with it."""
    cont, uploads = services.continuation, services.continuation.upload_root
    uploads.mkdir(exist_ok=True)
    path = _tone(uploads / "mine.wav", channels=2)
    clips = cont.continue_upload(str(path), "calm piano", "alpha", 1.6, 3.0, 1.0, 250, seed=5, variations=2)
    assert not path.exists() and len(clips) == 2
    rec = clips[0].clip
    assert rec.params["source"] == "continue" and rec.params["continuation"]["prompt_file"] == "the upload"
    assert rec.duration == pytest.approx(1.6, abs=0.01)
    wav, rate = sf.read(_tone(tmp_path / "copy.wav", channels=2), dtype="float32", always_2d=True)
    from models.debug import debug_generator

    want = debug_generator().prompt_audio(wav, rate)[0].numpy()
    got, _ = sf.read(rec.audio_file, dtype="float32")
    keep = len(want) - round(SPLICE_FADE * 8000)
    np.testing.assert_allclose(got[:keep], want[:keep], atol=1.5 / 32768)
    (uploads / "text.wav").write_text("not audio at all")
    _tone(uploads / "long.wav", seconds=10.5, rate=8000)
    (uploads / "big.wav").write_bytes(b"RIFF" + b"\0" * (cont.max_upload_bytes + 1))
    outside = _tone(tmp_path / "outside.wav")
    for name, duration, needle in [("text.wav", 2, "not audio"), ("long.wav", 12, "at most 9.98 s"),
                                   ("big.wav", 2, "the limit is 10 MiB"), ("short.wav", 0.9, "at least")]:
        if name == "short.wav":
            _tone(uploads / name)
        with pytest.raises(InputError, match=needle):
            cont.continue_upload(str(uploads / name), "x", "alpha", duration, 3.0, 1.0, 250)
        assert not (uploads / name).exists()
    with pytest.raises(InputError, match="no audio file"):
        cont.continue_upload(None, "x", "alpha", 2, 3.0, 1.0, 250)
    cont.continue_upload(str(outside), "x", "alpha", 1.5, 3.0, 1.0, 250)
    assert outside.exists()  # never deletes a file outside the upload folder


def test_continuation_counts_against_the_generation_rate_limit(services, tmp_path):
    gen, cont = services.generation, services.continuation
    clip = gen.generate("alpha", "calm piano", 0.3, seed=1)[0].clip
    who = Caller("session-rl", "10.0.0.9")
    gen.generate("alpha", "calm piano", 0.3, caller=who)
    cont.extend(clip.id, 1.0, caller=who)
    cont.continue_upload(str(_tone(tmp_path / "a.wav")), "x", "alpha", 1.5, 3.0, 1.0, 250, caller=who)
    gen.generate("alpha", "calm piano", 0.3, caller=who)
    with pytest.raises(RateLimited):
        cont.extend(clip.id, 1.0, caller=who)
    path = _tone(services.continuation.upload_root / "limited.wav")
    with pytest.raises(RateLimited):
        cont.continue_upload(str(path), "x", "alpha", 1.5, 3.0, 1.0, 250, caller=who)
    assert not path.exists()  # a refused upload is deleted too


# ----------------------------------------------------------------------------- through a live server
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("extend-live")
    (root / "registry.yaml").write_text(REGISTRY)
    running = serve("127.0.0.1", _free_port(), None, root / "registry.yaml", root / "data", min_listen=1.0,
                    min_votes=1, arena_duration=0.5, limits=RateLimits.unlimited(), block=False, quiet=True)
    yield running
    running.close()


def test_extend_and_continue_through_the_api(server, tmp_path):
    client = Client(server.url, verbose=False)
    *_, meta = client.predict("calm piano", "alpha", 0.5, api_name="/generate")
    clip_id = meta["clips"][0]["clip_id"]
    audio, picture, new_id, new_meta = client.predict(clip_id, 1.0, api_name="/extend")
    assert new_id != clip_id and new_meta["duration"] == pytest.approx(1.5, abs=0.01)
    assert sf.info(audio).duration == pytest.approx(1.5, abs=0.01)
    out = client.predict(handle_file(str(_tone(tmp_path / "p.wav"))), "calm piano", "alpha",
                         1.5, 1, 3.0, 1.0, 250, 7, 0.5, {}, api_name="/continue")
    assert out[-1] is None and out[-2]["clips"][0]["params"]["source"] == "continue"
    uploads = server.services.continuation.upload_root
    assert not any(p.suffix == ".wav" and p.name == "p.wav" for p in uploads.rglob("*.wav"))  # deleted once read
    (tmp_path / "bad.wav").write_bytes(b"RIFF0000WAVEnot really")
    with pytest.raises(AppError, match="not audio"):
        client.predict(handle_file(str(tmp_path / "bad.wav")), "x", "alpha", 2, 1, 3.0, 1.0, 250, 7, 0.5, {},
                       api_name="/continue")
    with pytest.raises(AppError, match="unknown clip"):
        client.predict("0" * 32, 1.0, api_name="/extend")
