"""Render a General MIDI score to a mono waveform with FluidSynth.

We drive libfluidsynth through a minimal ctypes binding rather than pretty_midi's
``PrettyMIDI.fluidsynth`` (via pyfluidsynth) for three reasons:

- determinism: pyfluidsynth only exposes 16-bit output, which FluidSynth dithers with a table
  filled from C ``rand()``; we read float samples (``fluid_synth_write_float``), no dither;
- one pass: all parts play at once on their own MIDI channels (drums on channel 10), instead of
  one synthesis pass per instrument;
- a fresh synthesizer per clip, so a clip never depends on what was rendered before it (resume
  and parallel workers give byte-identical files).

The soundfont is the General MIDI ``TimGM6mb.sf2`` that ships inside the pretty_midi package,
unless ``MUSICRL_SOUNDFONT`` names another .sf2 file. ``MUSICRL_FLUIDSYNTH_LIB`` may name the
shared library when it is not on the loader path.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import os
from pathlib import Path

import numpy as np
import pretty_midi

from models.errors import InputError

SUPPORTED_SAMPLE_RATES: tuple[int, ...] = (16000, 22050, 24000, 32000, 44100, 48000)
PEAK = 10 ** (-1.0 / 20)  # peak-normalise to -1 dBFS: headroom for resampling and codecs
FADE_OUT_S = 0.05
_DRUM_CHANNEL = 9
_LIBRARY_NAMES = ("fluidsynth", "libfluidsynth-3", "fluidsynth-3", "libfluidsynth")


class FluidSynthMissing(RuntimeError):
    """libfluidsynth could not be loaded (install the system package, e.g. libfluidsynth3)."""


@functools.lru_cache(maxsize=1)
def _library() -> ctypes.CDLL:
    """Load libfluidsynth and declare the handful of functions we call."""
    candidates = [os.environ["MUSICRL_FLUIDSYNTH_LIB"]] if os.environ.get("MUSICRL_FLUIDSYNTH_LIB") else []
    candidates += [found for name in _LIBRARY_NAMES if (found := ctypes.util.find_library(name))]
    candidates += ["libfluidsynth.so.3", "libfluidsynth.so.2"]
    lib = None
    for name in candidates:
        try:
            lib = ctypes.CDLL(name)
            break
        except OSError:
            continue
    if lib is None:
        raise FluidSynthMissing(
            "libfluidsynth not found: install it (Debian/Ubuntu: apt-get install --no-install-recommends "
            "libfluidsynth3; macOS: brew install fluid-synth) or set MUSICRL_FLUIDSYNTH_LIB"
        )
    vp, ci, cd, cs = ctypes.c_void_p, ctypes.c_int, ctypes.c_double, ctypes.c_char_p
    signatures = {
        "new_fluid_settings": (vp, []),
        "delete_fluid_settings": (None, [vp]),
        "fluid_settings_setnum": (ci, [vp, cs, cd]),
        "fluid_settings_setint": (ci, [vp, cs, ci]),
        "new_fluid_synth": (vp, [vp]),
        "delete_fluid_synth": (None, [vp]),
        "fluid_synth_sfload": (ci, [vp, cs, ci]),
        "fluid_synth_program_select": (ci, [vp, ci, ci, ci, ci]),
        "fluid_synth_noteon": (ci, [vp, ci, ci, ci]),
        "fluid_synth_noteoff": (ci, [vp, ci, ci]),
        "fluid_synth_cc": (ci, [vp, ci, ci, ci]),
        "fluid_synth_pitch_bend": (ci, [vp, ci, ci]),
        "fluid_synth_write_float": (ci, [vp, ci, vp, ci, ci, vp, ci, ci]),
        "fluid_set_log_function": (vp, [ci, vp, vp]),
        "fluid_version_str": (cs, []),
    }
    for name, (restype, argtypes) in signatures.items():
        fn = getattr(lib, name)
        fn.restype, fn.argtypes = restype, argtypes
    for level in (2, 3, 4):  # FLUID_WARN, FLUID_INFO, FLUID_DBG: silence (missing-preset chatter)
        lib.fluid_set_log_function(level, None, None)
    return lib


def require_fluidsynth() -> None:
    """Raise FluidSynthMissing (with install instructions) unless libfluidsynth loads."""
    _library()


def fluidsynth_version() -> str:
    """Version of the loaded libfluidsynth (e.g. "2.3.1"): part of what makes renders identical."""
    return _library().fluid_version_str().decode()


def fluidsynth_available() -> bool:
    """Whether libfluidsynth can be loaded here."""
    try:
        _library()
    except FluidSynthMissing:
        return False
    return True


def soundfont_path() -> Path:
    """The General MIDI soundfont: $MUSICRL_SOUNDFONT, else TimGM6mb.sf2 from pretty_midi."""
    override = os.environ.get("MUSICRL_SOUNDFONT")
    path = Path(override) if override else Path(pretty_midi.__file__).parent / "TimGM6mb.sf2"
    if not path.is_file():
        raise InputError(f"soundfont not found: {path}")
    return path


def _channels(pm: pretty_midi.PrettyMIDI) -> list[int]:
    """MIDI channel of each instrument: drums on 10 (index 9), the others on 1-9, 11-16."""
    free = [c for c in range(16) if c != _DRUM_CHANNEL]
    out = []
    for inst in pm.instruments:
        if inst.is_drum:
            out.append(_DRUM_CHANNEL)
        else:
            if not free:
                raise ValueError("more than 15 melodic instruments")
            out.append(free.pop(0))
    return out


def _events(pm: pretty_midi.PrettyMIDI, sample_rate: int, n_samples: int) -> list[tuple[int, int, int, int, int]]:
    """All events as (sample, order, channel, a, b), sorted; order: 0 CC, 1 note-off, 2 note-on
    (at one instant, controllers first and releases before attacks)."""
    events = []
    for channel, inst in zip(_channels(pm), pm.instruments, strict=True):
        for cc in inst.control_changes:
            events.append((int(round(cc.time * sample_rate)), 0, channel, cc.number, cc.value))
        for note in inst.notes:
            start = int(round(note.start * sample_rate))
            if start >= n_samples:
                continue
            events.append((start, 2, channel, note.pitch, note.velocity))
            events.append((int(round(note.end * sample_rate)), 1, channel, note.pitch, 0))
    events.sort()
    return events


def render_midi(
    pm: pretty_midi.PrettyMIDI, duration: float, sample_rate: int = 16000, gain: float = 0.4, normalize: bool = True
) -> np.ndarray:
    """Synthesize ``pm`` for exactly ``duration`` seconds -> float32 mono (N,), peak at -1 dBFS.

    N = round(duration * sample_rate). Notes still sounding at the end are cut with a 50 ms fade.
    ``normalize=False`` keeps the synthesizer's level (to compare stems of one score).
    Raises FluidSynthMissing (a RuntimeError) if libfluidsynth is not installed.
    """
    if sample_rate not in SUPPORTED_SAMPLE_RATES:
        raise InputError(f"sample rate {sample_rate} not supported; use one of {SUPPORTED_SAMPLE_RATES}")
    lib = _library()
    n_samples = int(round(duration * sample_rate))
    left = np.zeros(n_samples, dtype=np.float32)
    right = np.zeros(n_samples, dtype=np.float32)

    settings = lib.new_fluid_settings()
    synth = None
    try:
        lib.fluid_settings_setnum(settings, b"synth.sample-rate", float(sample_rate))
        lib.fluid_settings_setnum(settings, b"synth.gain", gain)
        lib.fluid_settings_setint(settings, b"synth.cpu-cores", 1)
        lib.fluid_settings_setint(settings, b"synth.polyphony", 256)
        lib.fluid_settings_setint(settings, b"synth.reverb.active", 1)
        lib.fluid_settings_setint(settings, b"synth.chorus.active", 1)
        synth = lib.new_fluid_synth(settings)
        if not synth:
            raise RuntimeError("fluidsynth could not create a synthesizer")
        sfid = lib.fluid_synth_sfload(synth, str(soundfont_path()).encode(), 1)
        if sfid < 0:
            raise RuntimeError(f"fluidsynth could not load the soundfont {soundfont_path()}")
        for channel, inst in zip(_channels(pm), pm.instruments, strict=True):
            bank = 128 if inst.is_drum else 0
            if lib.fluid_synth_program_select(synth, channel, sfid, bank, inst.program) != 0:
                lib.fluid_synth_program_select(synth, channel, sfid, bank, 0)  # kit/preset missing

        position = 0
        left_ptr, right_ptr = left.ctypes.data, right.ctypes.data
        sounding: dict[tuple[int, int], int] = {}  # (channel, key) -> notes on: overlaps of one key
        for sample, kind, channel, a, b in _events(pm, sample_rate, n_samples):
            sample = min(sample, n_samples)
            if sample > position:
                lib.fluid_synth_write_float(synth, sample - position, left_ptr, position, 1, right_ptr, position, 1)
                position = sample
            if kind == 0:
                lib.fluid_synth_cc(synth, channel, a, b)
            elif kind == 1:  # release only when the last overlapping note of this key ends
                sounding[channel, a] = sounding.get((channel, a), 1) - 1
                if sounding[channel, a] <= 0:
                    lib.fluid_synth_noteoff(synth, channel, a)
            else:
                sounding[channel, a] = sounding.get((channel, a), 0) + 1
                lib.fluid_synth_noteon(synth, channel, a, b)
        if position < n_samples:
            lib.fluid_synth_write_float(synth, n_samples - position, left_ptr, position, 1, right_ptr, position, 1)
    finally:
        if synth:
            lib.delete_fluid_synth(synth)
        lib.delete_fluid_settings(settings)

    mono = (left.astype(np.float64) + right) / 2.0
    fade = min(n_samples, int(FADE_OUT_S * sample_rate))
    if fade:
        mono[n_samples - fade :] *= np.linspace(1.0, 0.0, fade)
    peak = float(np.max(np.abs(mono))) if n_samples else 0.0
    if normalize and peak > 0:
        mono *= PEAK / peak
    return mono.astype(np.float32)


def to_pcm16(wave: np.ndarray) -> bytes:
    """Float waveform in [-1, 1] -> little-endian 16-bit PCM bytes (rounded, clipped)."""
    return np.clip(np.round(wave.astype(np.float64) * 32767.0), -32768, 32767).astype("<i2").tobytes()
