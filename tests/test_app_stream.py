"""The app streams clip 1 while it is made (GenerationService.generate_streaming, app.ui.live_payload, the
Generate tab's live player), and what it stores is exactly what it stores without streaming.

Debug models (tiny EnCodec decoder: a stream joins to the one-shot decode within 1e-4), clips of 1 s.
"""

from __future__ import annotations

import base64
import time

import numpy as np
import pytest
import soundfile as sf
import torch

from app.generation import AudioPiece, GenerationService
from app.registry import ModelRegistry, RegistryEntry
from app.store import open_store
from models.sampling import SamplingParams
from musicrl.continuation import prompt_from_array

DUR = 1.0
PARAMS = SamplingParams(cfg=3.0, top_k=50)


@pytest.fixture(scope="module")
def registry() -> ModelRegistry:
    return ModelRegistry([RegistryEntry("a", "Model A", path="debug")])


@pytest.fixture
def service(registry, tmp_path):
    with open_store(None, tmp_path / "data") as store:
        service = GenerationService(registry, store, max_batch_rows=8, stream_chunk_s=0.2, stream_first_chunk_s=0.1)
        yield service
        service.close()


def _drain(pieces):
    got = []
    while True:
        try:
            got.append(next(pieces))
        except StopIteration as done:
            return got, done.value


def test_streamed_pieces_join_to_the_stored_clip_and_the_clip_is_the_unstreamed_one(service):
    pieces, clips = _drain(service.generate_streaming("a", "calm piano", DUR, seed=4, variations=2))
    assert len(pieces) > 2 and all(p.sample_rate == clips[0].clip.sample_rate for p in pieces)
    assert pieces[0].audio.shape[-1] < pieces[1].audio.shape[-1]  # the first piece is the short one
    joined = torch.cat([p.audio for p in pieces], dim=-1)
    stored = torch.from_numpy(sf.read(clips[0].clip.audio_file, dtype="float32", always_2d=True)[0].T)
    gain = clips[0].clip.params["peak_normalization"]["gain"]
    assert joined.shape == stored.shape  # clip 1 whole, in order
    torch.testing.assert_close(joined, stored, atol=gain * 1e-4 + 2 / 32768, rtol=0)  # (16-bit WAV)
    plain = service.generate("a", "calm piano", DUR, seed=4, variations=2)  # the same request, not listened to
    assert [c.clip.audio_sha256 for c in plain] == [c.clip.audio_sha256 for c in clips]


def test_requests_batched_together_each_hear_their_own_first_clip(registry, tmp_path):
    with open_store(None, tmp_path / "data") as store:
        service = GenerationService(registry, store, autostart=False, stream_chunk_s=0.2, stream_first_chunk_s=0.1)
        try:
            _hear_their_own(service)
        finally:
            service.close()


def _hear_their_own(service: GenerationService) -> None:
    a = service.submit(service.request("a", "calm piano", DUR, PARAMS, (1,)), listen=True)
    b = service.submit(service.request("a", "fast techno drums", DUR, PARAMS, (2, 3)), listen=True)
    service.start()  # both queued: one batch of 3 rows
    heard = {name: torch.cat([p.audio for p in service.watch(job)], dim=-1) for name, job in (("a", a), ("b", b))}
    assert service.stats.rows == [3]
    for name, job in (("a", a), ("b", b)):
        first = job.future.result()[0]
        torch.testing.assert_close(heard[name], first.audio, atol=1e-4, rtol=0)


def test_a_listened_request_does_not_wait_for_batch_mates(service):
    service.batch_wait_s = 60.0  # a plain request would wait this long for company
    start = time.monotonic()
    pieces, _ = _drain(service.generate_streaming("a", "calm piano", DUR, seed=2))
    assert pieces and service.stats.rows == [1] and time.monotonic() - start < 30


def test_requests_that_cannot_stream_are_heard_when_done(service):
    """A continuation (its clip starts with the prompt's own samples) is not streamed: nothing arrives before
    the clip, which is what the unlistened request makes."""
    gen = service.registry.load("a")
    tone = np.sin(np.arange(gen.sample_rate // 2) * 0.05).astype(np.float32)
    prompt = prompt_from_array(gen, tone, gen.sample_rate, name="tone.wav")
    listened = service.submit(service.request("a", "calm piano", DUR, PARAMS, (1,), audio_prompt=prompt), listen=True)
    assert list(service.watch(listened)) == []
    plain = service.submit(service.request("a", "calm piano", DUR, PARAMS, (1,), audio_prompt=prompt))
    assert torch.equal(listened.future.result()[0].audio, service.wait(plain)[0].audio)


def test_the_page_gets_pieces_as_16_bit_pcm_with_their_place_in_the_clip():
    from app.ui import live_payload

    audio = torch.tensor([[0.5, -1.0, 2.0], [0.5, 0.0, 0.0]])  # 2 channels: the page plays their mean
    payload = live_payload(AudioPiece(audio, 8000, start=160))
    assert payload["start"] == 160 and payload["rate"] == 8000
    assert np.frombuffer(base64.b64decode(payload["pcm16"]), "<i2").tolist() == [16384, -16384, 32767]  # 1.0
