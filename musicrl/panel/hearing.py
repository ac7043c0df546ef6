"""What a simulated listener hears in a clip: a vector of audible properties, measured with the
EVALUATION judges and plain signal features — never with a training reward or a reward model.

    hearing = Hearing(Judges.load(ASSETS_DIR / "judges"))     # or Hearing(None): signal features only
    raw = hearing.features(["calm ambient piano"], [wav], 16000)   # [N, F] in FEATURES order

Features (``FEATURES`` order) and the direction a typical listener likes (``listeners.SHARED_TASTE``):

- ``attribute_match`` (up): judges — the mean probability they give each attribute the prompt states
  (the soft form of ``rewards.AttributeMatch``); NaN when the prompt states none;
- ``judge_confidence`` (up): judges — mean over attributes of the top label probability (does it
  sound like *some* style, tempo, instrument?);
- ``level`` (up): −abs(RMS dBFS − COMFORT_DB), neither too quiet nor too loud;
- ``clipping`` (down): fraction of full-scale samples;
- ``noisiness`` (down): spectral flatness;
- ``brightness`` (a matter of taste: shared weight 0): log2 spectral centroid;
- ``silence`` (down): fraction of frames under −50 dBFS;
- ``pulse`` (up): onset autocorrelation peak, a steady beat;
- ``key_clarity`` (up): best Krumhansl–Kessler key correlation, sounds in a key.

The stated attributes of a free-text prompt come from the corpus caption parser
(``musicrl.corpus.captions.parse_caption``), as ``musicrl eval`` reads them.
Shapes: clips are mono waveforms [S] (any lengths); features [N, F].
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from math import gcd

import numpy as np
import torch

from evaluation.judges import Judges
from evaluation.listening import signal_features_of
from musicrl.corpus.attributes import tempo_band
from musicrl.corpus.captions import parse_caption

FEATURES: tuple[str, ...] = ("attribute_match", "judge_confidence", "level", "clipping", "noisiness", "brightness",
                             "silence", "pulse", "key_clarity")
COMFORT_DB = -16.0  # RMS level of the rendered corpus (peak-normalised to -1 dBFS) is about -16 dBFS


def stated_attributes(prompt: str, labels: dict[str, list[str]]) -> dict[str, str]:
    """The judged attributes a prompt states, spelled as the judges' labels (``str(value)``); others dropped.

    Example: "slow jazz piano with no drums" -> {"tempo_band": "slow", "style": "jazz",
    "lead_instrument": "piano", "drums": "False"} (given those vocabularies).
    """
    try:
        stated = parse_caption(prompt)
    except ValueError:  # a key no corpus clip is in ("E# minor"): the judges cannot hold the clip to it
        return {}
    if "tempo" in stated and "tempo_band" not in stated:
        stated["tempo_band"] = tempo_band(float(stated["tempo"]))
    return {a: str(v) for a, v in stated.items() if a in labels and str(v) in labels[a]}


def resample(wav: np.ndarray, rate: int, target: int) -> np.ndarray:
    """Polyphase resampling [S] -> [S * target / rate] (scipy; identity when the rates match)."""
    if rate == target:
        return wav.astype(np.float32, copy=False)
    from scipy.signal import resample_poly

    g = gcd(rate, target)
    return resample_poly(wav, target // g, rate // g).astype(np.float32)


class Hearing:
    """Raw audible features of clips (the FEATURES table). ``judges`` None: the two judge features
    are NaN (a listener then treats them as average). Thread-safe: judge calls are serialised."""

    def __init__(self, judges: Judges | None = None, batch_size: int = 16) -> None:
        self.judges = judges
        self.batch_size = batch_size
        self._lock = threading.Lock()

    def judge_features(self, prompts: Sequence[str], clips: Sequence[np.ndarray], sample_rate: int) -> np.ndarray:
        """[N, 2]: attribute_match, judge_confidence (NaN without judges or stated attributes)."""
        out = np.full((len(clips), 2), np.nan)
        if self.judges is None or not clips:
            return out
        rate = self.judges.sample_rate
        labels = self.judges.cfg.labels
        for i, (prompt, clip) in enumerate(zip(prompts, clips, strict=True)):
            wav = torch.from_numpy(resample(np.asarray(clip, np.float32), sample_rate, rate))[None]
            with self._lock:
                probs = self.judges.probabilities(wav, self.batch_size)  # {attr: [1, L]}
            stated = stated_attributes(prompt, labels)
            if stated:
                out[i, 0] = np.mean([float(probs[a][0, labels[a].index(v)]) for a, v in stated.items()])
            out[i, 1] = np.mean([float(p[0].max()) for p in probs.values()])
        return out

    def features(self, prompts: Sequence[str], clips: Sequence[np.ndarray], sample_rate: int) -> np.ndarray:
        """N prompts and N clips [S] at ``sample_rate`` -> raw features [N, F] (FEATURES order)."""
        if len(prompts) != len(clips):
            raise ValueError(f"{len(prompts)} prompts for {len(clips)} clips")
        clips = [np.asarray(c, np.float32).reshape(-1) for c in clips]
        sig = signal_features_of(clips, sample_rate)
        judged = self.judge_features(prompts, clips, sample_rate)
        columns = {
            "attribute_match": judged[:, 0],
            "judge_confidence": judged[:, 1],
            "level": -np.abs(sig["loudness_db"] - COMFORT_DB),
            "clipping": sig["clipping"],
            "noisiness": sig["flatness"],
            "brightness": sig["brightness"],
            "silence": sig["silence"],
            "pulse": sig["pulse"],
            "key_clarity": sig["key_clarity"],
        }
        return np.stack([columns[name] for name in FEATURES], axis=-1).reshape(len(clips), len(FEATURES))
