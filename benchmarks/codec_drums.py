"""Does the codec put percussion into clips without drums? (issue 15, item 3: "no-drum clips must stay
percussion-free through encode/decode")

    python benchmarks/codec_drums.py --corpus data/corpus_judge3k --clips 24

For test-split clips with and without drums: the percussive-energy share (``evaluation.signal_judges
.percussive_share``: harmonic-percussive separation by median filtering, Fitzgerald 2010) of the original and
of its encode -> decode through the shipped codec, with the decoder's phase estimated several ways, and the
codec's magnitude with the original's own phase (an oracle: what the codes alone change). Whole spectrum and
above 4 kHz (where the drum judge looks); medians over the clips.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from evaluation.signal_judges import percussive_share
from models.spectral_codec import SpectralCodec


def decodes(codec: SpectralCodec, wav: torch.Tensor) -> dict[str, torch.Tensor]:
    """wav [S] -> {setting: wav [S']}: the original, the codec decodes, and the codec magnitude + true phase."""
    cfg, window = codec.cfg, torch.hann_window(codec.cfg.n_fft)
    codes = codec.encode(wav[None, None])
    out = {"original": wav}
    settings = {"phase head, one iSTFT": {"iters": 0}, "phase head + 2 Griffin-Lim (shipped)": {"iters": 2},
                "phase head + 32 Griffin-Lim": {"iters": 32},
                "random phase + 32 Griffin-Lim": {"iters": 32, "head": False}}
    for name, kwargs in settings.items():
        out[name] = codec.decode(codes, **kwargs)[0, 0]
    spec = torch.stft(wav, cfg.n_fft, cfg.hop, window=window, return_complex=True)
    mag = codec.decode_magnitude(codes)[0]
    frames = min(mag.shape[-1], spec.shape[-1])
    phase = spec[:, :frames] / spec[:, :frames].abs().clamp_min(1e-8)
    out["codec magnitude, original phase (oracle)"] = torch.istft(mag[:, :frames] * phase, cfg.n_fft, cfg.hop,
                                                                   window=window)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path, default=Path("data/corpus_judge3k"))
    parser.add_argument("--codec", type=Path, default=Path("models/assets/default/codec"))
    parser.add_argument("--clips", type=int, default=24, help="clips of each kind (drums, no drums)")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    torch.set_num_threads(1)
    codec = SpectralCodec.load(args.codec)
    rows = [json.loads(line) for line in (args.corpus / "manifest.jsonl").open()]
    result = {}
    for drums in (False, True):
        picked = [r for r in rows if r["split"] == "test" and bool(r["drums"]) == drums][: args.clips]
        shares: dict[str, list[tuple[float, float]]] = {}
        for row in picked:
            wav, rate = sf.read(args.corpus / row["path"], dtype="float32")
            for name, audio in decodes(codec, torch.from_numpy(wav)).items():
                a = audio.numpy()
                shares.setdefault(name, []).append((percussive_share(a, rate), percussive_share(a, rate, min_hz=4000)))
        kind = "drums" if drums else "no drums"
        result[kind] = {name: {"whole": float(np.median([v[0] for v in vals])),
                               "above_4khz": float(np.median([v[1] for v in vals])), "clips": len(vals)}
                        for name, vals in shares.items()}
        for name, m in result[kind].items():
            print(f"{kind:8s} | {name:42s} | whole {m['whole']:.3f} | above 4 kHz {m['above_4khz']:.3f}", flush=True)
    if args.out is not None:
        args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
