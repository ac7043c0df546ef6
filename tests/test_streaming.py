"""Streaming (models.streaming, MusicGenerator.stream, generate --stream): chunks while sampling goes on, joined
into the one-shot result within the stated tolerance."""

import json
import math

import pytest
import soundfile as sf
import torch

from models.debug import debug_generator
from models.errors import InputError
from models.registry import load_generator
from models.sampling import SamplingParams
from models.streaming import StreamDecoder, StreamLimiter, stream_error
from musicrl.cli import main


def _frame_decoder(codes: torch.Tensor) -> torch.Tensor:
    """A toy codec with no reach: frame t -> 4 samples equal to the sum of its codes."""
    return codes.sum(dim=1, keepdim=True).float().repeat_interleave(4, dim=-1)


def _smooth_decoder(codes: torch.Tensor) -> torch.Tensor:
    """A toy codec whose samples depend on the neighbouring frames (a 3-frame moving average)."""
    x = codes.sum(dim=1, keepdim=True).float()
    x = torch.nn.functional.avg_pool1d(torch.nn.functional.pad(x, (1, 1), mode="replicate"), 3, 1)
    return x.repeat_interleave(4, dim=-1)


@pytest.mark.parametrize("decode", [_frame_decoder, _smooth_decoder])
@pytest.mark.parametrize(("chunk", "context", "overlap"), [(3, 0, 0), (3, 1, 1), (5, 2, 2), (1, 1, 0)])
def test_stream_decoder_joins_to_the_one_shot_decode(decode, chunk, context, overlap):
    codes = torch.randint(0, 9, (2, 4, 23), generator=torch.Generator().manual_seed(0))
    dec = StreamDecoder(decode, 4, chunk, context, overlap)
    pieces = [dec.push(codes[:, :, :f]) for f in range(1, 23)] + [dec.push(codes, final=True)]
    joined = torch.cat([p for p in pieces if p is not None], dim=-1)
    assert joined.shape == (2, 1, 92)
    if decode is _frame_decoder or context >= 1:  # the decoder's reach is covered: exact
        torch.testing.assert_close(joined, decode(codes), atol=1e-5, rtol=0)
    assert sum(p is not None for p in pieces) > 1  # it did stream


def test_stream_decoder_crossfade_by_hand():
    """Overlap 1 frame: the held-back frame of chunk 1 and the same frame decoded again are mixed with
    weights 2/3 and 1/3, then 1/3 and 2/3 (linspace without its end points)."""
    calls = []

    def decode(codes):
        calls.append(codes.shape[-1])
        return torch.full((1, 1, codes.shape[-1] * 2), float(len(calls)))  # decode n -> value n

    dec = StreamDecoder(decode, 2, chunk=2, context=0, overlap=1)
    assert dec.push(torch.zeros(1, 1, 2)) is None
    first = dec.push(torch.zeros(1, 1, 3))  # frames [0, 3): emits [0, 2), holds frame 2 back
    assert first.tolist() == [[[1.0] * 4]]
    last = dec.push(torch.zeros(1, 1, 4), final=True)  # decodes [2, 4): frame 2 crossfaded, frame 3 new
    assert last[0, 0].tolist() == pytest.approx([1 * 2 / 3 + 2 / 3, 1 / 3 + 2 * 2 / 3, 2.0, 2.0])


def test_limiter_only_lowers_its_gain():
    lim = StreamLimiter(2, ceiling=0.5)
    a = lim(torch.tensor([[[0.25, -1.0]], [[0.1, 0.2]]]))
    torch.testing.assert_close(a, torch.tensor([[[0.125, -0.5]], [[0.1, 0.2]]]))
    b = lim(torch.tensor([[[0.4, 0.2]], [[2.0, 0.0]]]))  # row 0 keeps 0.5; row 1 drops to 0.25
    torch.testing.assert_close(b, torch.tensor([[[0.2, 0.1]], [[0.5, 0.0]]]))
    assert lim.gains.tolist() == [0.5, 0.25]


def test_stream_error_by_hand():
    a, b = torch.ones(1, 1, 2048), torch.ones(1, 1, 2048)
    b[..., 0] = 0.0
    err = stream_error(a, b)
    assert err["max_abs"] == 1.0 and err["length_diff"] == 0
    assert err["snr_db"] == pytest.approx(10 * math.log10(2047), abs=1e-3)  # 2047 / 1 in energy


def test_generator_stream_equals_one_shot_with_encodec():
    """The tiny EnCodec decoder (convolutions and an LSTM) with 0.2 s of context: the joined stream equals
    the one-shot decode within 1e-4, and the codes are sample()'s."""
    gen = debug_generator()
    plan = gen.plan(["calm piano", "fast techno"], 2.0, SamplingParams(cfg=3.0), seeds=3)
    steps = []
    chunks = list(gen.stream(plan, chunk_seconds=0.5, on_step=lambda d, t: steps.append((d, t))))
    assert len(chunks) > 2 and chunks[-1].final and not any(c.final for c in chunks[:-1])
    assert [c.start for c in chunks] == [sum(x.audio.shape[-1] for x in chunks[:i]) for i in range(len(chunks))]
    assert steps[-1] == (plan.frames + 3, plan.frames + 3)
    codes = chunks[-1].codes
    assert torch.equal(codes, gen.sample(plan).codes)
    joined = torch.cat([c.audio for c in chunks], dim=-1) / chunks[-1].gains[:, None, None]
    err = stream_error(joined, gen.codec.decode(codes))
    assert err["length_diff"] == 0 and err["max_abs"] < 1e-4


def test_generator_stream_with_the_spectral_codec_stays_within_the_stated_tolerance():
    """The embedded default's decoder estimates phase per decode (phase head + Griffin-Lim iterations), so a
    chunk's samples differ from the one-shot decode's; by log-magnitude the stream is at most 1.25x as far
    from the one-shot decode as a Griffin-Lim decode from another random phase is (docs/BENCHMARKS.md)."""
    from models.audio_features import griffin_lim

    gen = load_generator("default")
    plan = gen.plan(["calm piano with strings"], 2.0, SamplingParams(cfg=3.0), seeds=0)
    chunks = list(gen.stream(plan, chunk_seconds=0.5))
    codes = chunks[-1].codes
    joined = torch.cat([c.audio for c in chunks], dim=-1) / chunks[-1].gains[:, None, None]
    one_shot = gen.codec.decode(codes)
    cfg = gen.codec.cfg
    other = griffin_lim(gen.codec.decode_magnitude(codes), cfg.n_fft, cfg.hop, cfg.griffin_lim_iters,
                        length=one_shot.shape[-1], seed=1)[:, None]
    assert stream_error(joined, one_shot)["logmag_l1"] < 1.25 * stream_error(other, one_shot)["logmag_l1"]


def test_long_form_plans_are_not_streamed():
    gen = debug_generator()
    plan = gen.plan(["x"], gen.max_duration * 2, SamplingParams(cfg=3.0), long_form=True)
    with pytest.raises(InputError, match="streaming covers one window"):
        next(gen.stream(plan))


def test_generate_stream_writes_a_growing_valid_wav_then_the_same_files(tmp_path, capsys):
    argv = ["generate", "calm piano", "--model", "debug", "--duration", "1", "--seed", "2", "--save-codes"]
    assert main([*argv, "--out", str(tmp_path / "plain")]) == 0
    assert main([*argv, "--stream", "--stream-chunk", "0.25", "--out", str(tmp_path / "stream")]) == 0
    err = capsys.readouterr().err
    assert "first audio after" in err
    plain, streamed = (sorted(p.name for p in (tmp_path / d).iterdir()) for d in ("plain", "stream"))
    assert plain == streamed  # same clip id, no partial file left behind
    meta = json.loads(next((tmp_path / "stream").glob("*.json")).read_text())
    assert meta["stream"]["chunks"] > 2 and meta["stream"]["first_audio_s"] > 0
    a, _ = sf.read(next((tmp_path / "plain").glob("*.wav")))
    b, _ = sf.read(next((tmp_path / "stream").glob("*.wav")))
    assert a.shape == b.shape and abs(a - b).max() < 2e-3  # 16-bit rounding of the same audio (EnCodec: exact)
    codes = [next((tmp_path / d).glob("*.npy")).read_bytes() for d in ("plain", "stream")]
    assert codes[0] == codes[1]


def test_bench_stream_reports_first_audio_and_error(capsys):
    assert main(["bench", "stream", "--model", "debug", "--duration", "0.6", "--chunks", "0.2", "--repeats", "1"]) == 0
    out = capsys.readouterr().out
    assert "first audio" in out and "SNR" in out


@pytest.mark.parametrize(("extra", "needle"), [
    (["--duration", "20"], "--stream makes one window"),
    (["--stream-chunk", "0"], "--stream-chunk from 0.1 to 10"),
    (["--best-of", "2"], "does not combine with --best-of"),
])
def test_generate_stream_refusals_write_nothing(tmp_path, capsys, extra, needle):
    out = tmp_path / "out"
    assert main(["generate", "x", "--model", "debug", "--stream", *extra, "--out", str(out)]) == 2
    assert needle in capsys.readouterr().err and not out.exists()


def test_stream_decoder_first_chunk_comes_sooner_and_still_joins():
    """first_chunk=1: the first audio needs 1 + overlap + context frames instead of chunk + overlap + context;
    the rest of the stream is unchanged in size and the join is still exact."""
    codes = torch.randint(0, 9, (1, 4, 20), generator=torch.Generator().manual_seed(1))
    dec = StreamDecoder(_smooth_decoder, 4, chunk=6, context=1, overlap=1, first_chunk=1)
    pieces = [dec.push(codes[:, :, :f]) for f in range(1, 20)]
    first = next(f for f, p in enumerate(pieces, start=1) if p is not None)
    assert first == 1 + 1 + 1  # first_chunk + overlap + context
    pieces.append(dec.push(codes, final=True))
    joined = torch.cat([p for p in pieces if p is not None], dim=-1)
    torch.testing.assert_close(joined, _smooth_decoder(codes), atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="overlap"):
        StreamDecoder(_smooth_decoder, 4, chunk=6, context=1, overlap=2, first_chunk=1)


def test_generator_stream_of_chosen_rows_equals_those_rows_of_the_full_stream():
    """rows=[1]: only row 1 is decoded and streamed (what a server streaming one listener's clip asks); its
    audio and the returned codes of every row equal the full stream's."""
    gen = debug_generator()
    plan = gen.plan(["calm piano", "fast techno"], 1.0, SamplingParams(cfg=3.0), seeds=5)
    full = list(gen.stream(plan, chunk_seconds=0.3))
    one = list(gen.stream(plan, chunk_seconds=0.3, first_chunk_seconds=0.1, rows=[1]))
    assert torch.equal(one[-1].codes, full[-1].codes)
    assert one[0].audio.shape[0] == 1 and one[0].audio.shape[-1] < full[0].audio.shape[-1]
    torch.testing.assert_close(torch.cat([c.audio for c in one], -1) / one[-1].gains[:, None, None],
                               torch.cat([c.audio for c in full], -1)[1:] / full[-1].gains[1:, None, None],
                               atol=1e-4, rtol=0)
    with pytest.raises(ValueError, match="not rows"):
        next(gen.stream(plan, rows=[2]))
