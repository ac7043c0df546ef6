"""Procedural composition: a seed plus named attributes in, a General MIDI score out.

``draw_composition`` picks the attributes of one composition (mood, mode, key, tempo, drums, the
lead instruments of its rendered variants) from a style; ``compose`` turns a composition and one of
its lead instruments into a ``pretty_midi.PrettyMIDI`` with up to five parts named ``lead``,
``comp``, ``pad``, ``bass`` and ``drums``. Both are pure functions of their arguments: every random
choice comes from a NumPy generator seeded by the composition, and the lead instrument only changes
the lead's program and octave, so the variants of a composition play the same notes.

How the music is made (see styles.py for the per-style data):

- harmony: a Roman-numeral progression of the style in the key, one chord per ``bars_per_chord``;
- melody: a two-bar motif (rhythm drawn on the style's grid with metric weights, pitches as scale
  steps snapped to chord tones on strong beats) played as A A' B A'' phrases, so it repeats and
  varies like a tune; then moved by octaves into the lead instrument's range;
- accompaniment, bass and drums: the style's step patterns realised on the chords, with voice
  leading for chords, walking bass for jazz, crashes and fills closing 4-bar phrases;
- dynamics: velocities from the energy level, metric accents, a phrase arc, a per-composition
  curve over the clip (steady, swell, arc or fade) and a little humanisation.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pretty_midi

from musicrl.corpus.attributes import (
    KEYS,
    LEAD_PROGRAMS,
    LEAD_RANGES,
    MOOD_ENERGY,
    MOOD_MODES,
    key_pitch_class,
)
from musicrl.corpus.lines import (
    arpeggio_note,
    bass_pitch,
    chord_track,
    close_voicing,
    fit_range,
    make_melody,
    power_voicing,
    walking_bass,
)
from musicrl.corpus.styles import (
    CRASH,
    HIGH_TOM,
    LOW_TOM,
    MID_TOM,
    SNARE,
    Style,
    get_style,
)

# Base velocity of each energy level (lines.ENERGY_DENSITY scales melody density).
ENERGY_VELOCITY = {"low": 60, "medium": 80, "high": 100}
DYNAMIC_CURVES = ("steady", "swell", "arc", "fade")
# Mixer levels (CC 7) per part: the lead sits on top so it is clearly the melody.
PART_VOLUME = {"lead": 118, "comp": 78, "pad": 58, "bass": 100, "drums": 100}
# Soft-sounding leads of TimGM6mb (measured lead-vs-rest level, 42 clips): the other parts are
# turned down by this many dB so every lead stays on top of the mix; drums by at most
# DRUM_DUCK_MAX_DB, so they stay audible (they mask a melody less than chords do).
LEAD_BOOST_DB = {
    "electric guitar": 6.0,
    "piano": 4.0,
    "acoustic guitar": 4.0,
    "electric piano": 2.0,
    "organ": 1.5,
    "synth lead": 2.0,
    "strings": 2.0,
    "distorted guitar": 2.0,
}
DRUM_DUCK_MAX_DB = 3.0


@dataclass(frozen=True)
class Composition:
    """The attributes of one composition and the seed of its notes (shared by all its variants)."""

    composition_id: str
    seed: int
    style: str
    tempo: int
    key: str
    mode: str
    mood: str
    drums: bool
    leads: tuple[str, ...]  # the lead instrument of each rendered variant

    @property
    def energy(self) -> str:
        return MOOD_ENERGY[self.mood]


def draw_composition(
    rng: np.random.Generator, composition_id: str, style_name: str, max_variants: int = 2
) -> Composition:
    """Draw the attributes of one composition of ``style_name`` (mood first: it steers the rest).

    Mood -> energy -> tempo (low energy in the lower half of the style's range, high in the upper
    half); mood -> allowed modes; key uniform; drums with the style's probability; 1 or more
    distinct lead instruments (one per variant, at most ``max_variants``).
    """
    style = get_style(style_name)
    mood = str(rng.choice(style.moods))
    modes = [m for m in MOOD_MODES[mood] if (style.major_progressions if m == "major" else style.minor_progressions)]
    mode = str(rng.choice(modes))
    lo, hi = style.tempo_range
    span = hi - lo
    window = {"low": (lo, lo + span // 2), "medium": (lo + span // 4, hi - span // 4), "high": (lo + span // 2, hi)}[
        MOOD_ENERGY[mood]
    ]
    tempo = int(rng.integers(window[0], window[1] + 1))
    key = KEYS[int(rng.integers(12))]
    drums = bool(rng.random() < style.drum_probability)
    n_variants = 1 if (max_variants < 2 or len(style.leads) < 2 or rng.random() < 0.6) else 2
    leads = tuple(str(x) for x in rng.choice(style.leads, size=n_variants, replace=False))
    seed = int(rng.integers(2**31 - 1))
    return Composition(composition_id, seed, style_name, tempo, key, mode, mood, drums, leads)


# ----------------------------------------------------------------------------------------------
# Timing helpers


class _Clock:
    """Grid step -> seconds for one composition (tempo, grid, swing)."""

    def __init__(self, style: Style, tempo: int):
        self.step = 60.0 / tempo / style.steps_per_beat
        self.swing = style.swing if style.steps_per_beat == 4 else 0.0

    def time(self, step: float) -> float:
        whole = int(step)
        offset = self.swing * self.step if whole % 2 == 1 and step == whole else 0.0
        return step * self.step + offset


def _velocity(base: float, curve: str, t: float, rng: np.random.Generator, spread: float = 4.0) -> int:
    """Base velocity shaped by the clip-level dynamic curve at ``t`` in [0, 1] and humanised."""
    factor = {
        "steady": 1.0,
        "swell": 0.84 + 0.26 * t,
        "arc": 0.86 + 0.22 * math.sin(math.pi * t),
        "fade": 1.08 - 0.24 * t,
    }[curve]
    return int(np.clip(round(base * factor + rng.normal(0.0, spread)), 1, 127))


def _pattern_notes(pattern: str, n_bars: int, bar: int) -> list[tuple[int, str, int]]:
    """Expand a step pattern over the clip: (onset step, token, length in steps until the next
    onset or rest; ``-`` holds)."""
    total = n_bars * bar
    out = []
    for step in range(total):
        token = pattern[step % len(pattern)]
        if token in ".-":
            continue
        length = 1
        while step + length < total and pattern[(step + length) % len(pattern)] == "-":
            length += 1
        out.append((step, token, length))
    return out


def _instrument(
    name: str, program: int, reverb: int, is_drum: bool = False, boost_db: float = 0.0
) -> pretty_midi.Instrument:
    """An empty part with its mixer settings; non-lead parts are lowered by ``boost_db``
    (CC 7 is heard as 40 log10(value / 127) dB)."""
    inst = pretty_midi.Instrument(program=program, is_drum=is_drum, name=name)
    volume = PART_VOLUME[name] if name == "lead" else round(PART_VOLUME[name] * 10 ** (-boost_db / 40))
    inst.control_changes += [
        pretty_midi.ControlChange(7, volume, 0.0),
        pretty_midi.ControlChange(91, reverb, 0.0),
        pretty_midi.ControlChange(93, 20 if name in ("comp", "pad") else 0, 0.0),
    ]
    return inst


def _pick_program(rng: np.random.Generator, options: tuple[int, ...], avoid: set[int]) -> int:
    """A program from ``options`` that no lead of the composition uses (pianos count as one)."""

    def family(p: int) -> int:
        return -1 if p < 8 else p

    allowed = [p for p in options if family(p) not in {family(a) for a in avoid}]
    return int(rng.choice(allowed or list(options)))


def compose(composition: Composition, lead: str, duration: float) -> pretty_midi.PrettyMIDI:
    """Score of ``composition`` with ``lead`` on the melody, covering ``duration`` seconds.

    Pure: the same arguments give the same notes. Every random draw below happens in a fixed
    order from the composition seed, before and independently of ``lead``.
    """
    if lead not in composition.leads:
        raise ValueError(f"{lead!r} is not a lead of composition {composition.composition_id}")
    style = get_style(composition.style)
    rng = np.random.default_rng(composition.seed)
    tonic = key_pitch_class(composition.key)
    energy = composition.energy
    clock = _Clock(style, composition.tempo)
    bar = style.steps_per_bar
    n_bars = math.ceil(duration / (bar * clock.step)) + 1

    chords = chord_track(style, composition.mode, tonic, rng, n_bars)
    melody = make_melody(style, composition.mode, tonic, chords, energy, rng, n_bars)
    lead_programs = {LEAD_PROGRAMS[name] for name in composition.leads}
    comp_program = _pick_program(rng, style.comp_programs, lead_programs)
    comp_pattern = str(rng.choice(style.comp_patterns))
    bass_program = int(rng.choice(style.bass_programs))
    bass_pattern = str(rng.choice(style.bass_patterns))
    use_pad = bool(style.pad_programs) and rng.random() < 0.4
    pad_program = _pick_program(rng, style.pad_programs or (0,), lead_programs | {comp_program})
    kit = int(rng.choice(style.drum_kits))
    drum_pattern = style.drum_patterns[int(rng.integers(len(style.drum_patterns)))]
    curve = str(rng.choice(DYNAMIC_CURVES))
    fill_with_toms = bool(rng.random() < 0.5)
    base = ENERGY_VELOCITY[energy]
    human = np.random.default_rng(composition.seed + 1)  # humanisation, its own stream

    def add(
        inst: pretty_midi.Instrument, start: float, end: float, pitch: int, velocity: float, jitter: float = 0.004
    ) -> None:
        offset = float(human.normal(0.0, jitter))  # the whole note moves: legato lines stay legato
        start, end = max(0.0, start + offset), end + offset
        if start >= duration or not 0 <= pitch <= 127:
            return
        end = min(max(end, start + 0.03), duration)
        vel = _velocity(velocity, curve, start / duration, human)
        inst.notes.append(pretty_midi.Note(velocity=vel, pitch=int(pitch), start=start, end=end))

    pm = pretty_midi.PrettyMIDI(initial_tempo=float(composition.tempo))
    boost = LEAD_BOOST_DB.get(lead, 0.0)

    # Lead: the melody, moved by octaves into the instrument's range.
    lead_inst = _instrument("lead", LEAD_PROGRAMS[lead], style.reverb)
    shift = fit_range([p for _, _, p, _ in melody], *LEAD_RANGES[lead])
    for i, (step, length, pitch, accent) in enumerate(melody):
        arc = 6.0 * math.sin(math.pi * ((i % 16) + 0.5) / 16)  # swell and ebb over each 16 notes
        add(
            lead_inst,
            clock.time(step),
            clock.time(step + length) - 0.02 * clock.step * length,
            pitch + shift,
            base + 10 + 8 * accent + arc,
        )
    pm.instruments.append(lead_inst)

    # Accompaniment: chords (voice-led) or arpeggios on the style's pattern.
    comp_inst = _instrument("comp", comp_program, style.reverb, boost_db=boost)
    previous: list[int] | None = None
    for step, token, length in _pattern_notes(comp_pattern, n_bars, bar):
        chord = chords[step // bar]
        start, end = clock.time(step), clock.time(step + length) - 0.1 * clock.step
        if token in "xX":
            voicing = power_voicing(chord) if style.comp_voicing == "power" else close_voicing(chord, previous)
            previous = voicing
            for pitch in voicing:
                add(comp_inst, start, end, pitch, base - 14 + (10 if token == "X" else 0), 0.003)
        else:
            add(comp_inst, start, end, arpeggio_note(chord, token), base - 12 + (4 if step % bar == 0 else 0))
    pm.instruments.append(comp_inst)

    if use_pad:
        pad_inst = _instrument("pad", pad_program, style.reverb, boost_db=boost)
        pad_prev: list[int] | None = None
        for b, chord in enumerate(chords):
            if b % style.bars_per_chord == 0:
                pad_prev = close_voicing(chord, pad_prev, 55, 76)
                end = clock.time((b + style.bars_per_chord) * bar)
                for pitch in pad_prev:
                    add(pad_inst, clock.time(b * bar), end, pitch, base - 22, 0.0)
        pm.instruments.append(pad_inst)

    # Bass.
    bass_inst = _instrument("bass", bass_program, style.reverb // 3, boost_db=boost)
    if "W" in bass_pattern:
        line = walking_bass(chords, style, rng)
        for i, (step, pitch) in enumerate(line):
            nxt = line[i + 1][0] if i + 1 < len(line) else step + style.steps_per_beat
            add(
                bass_inst,
                clock.time(step),
                clock.time(nxt) - 0.1 * clock.step,
                pitch,
                base + 2 + (6 if step % bar == 0 else 0),
            )
    else:
        for step, token, length in _pattern_notes(bass_pattern, n_bars, bar):
            b = step // bar
            chord, nxt = chords[b], chords[b + 1] if b + 1 < len(chords) else chords[0]
            vel = base - 25 if token == "r" else base + 2 + (6 if step % bar == 0 else 0)
            add(
                bass_inst,
                clock.time(step),
                clock.time(step + length) - 0.12 * clock.step,
                bass_pitch(token, chord, nxt, style.bass_low),
                vel,
            )
    pm.instruments.append(bass_inst)

    # Drums (GM kit on channel 10), with crashes and fills closing each 4-bar phrase.
    if composition.drums:
        drum_inst = _instrument("drums", kit, style.reverb // 2, is_drum=True, boost_db=min(boost, DRUM_DUCK_MAX_DB))
        level = {"X": 1.18, "x": 1.0, "o": 0.55}
        spb = style.steps_per_beat
        fill_notes = (HIGH_TOM, HIGH_TOM, MID_TOM, LOW_TOM) if fill_with_toms else (SNARE,) * 4
        for b in range(n_bars):
            fill = style.crash_and_fills and b % 4 == 3
            for note, pattern in drum_pattern.items():
                for s in range(bar):
                    token = pattern[(b * bar + s) % len(pattern)]
                    if token == "." or (fill and s >= bar - spb):
                        continue
                    t = clock.time(b * bar + s)
                    add(drum_inst, t, t + 0.1, note, (base + 12) * level[token], 0.002)
            if style.crash_and_fills and b % 4 == 0:
                add(drum_inst, clock.time(b * bar), clock.time(b * bar) + 0.5, CRASH, base + 16, 0.0)
            if fill:
                for k in range(spb):
                    t = clock.time(b * bar + bar - spb + k)
                    add(drum_inst, t, t + 0.1, fill_notes[k], base + 4 + 6 * k, 0.002)
        pm.instruments.append(drum_inst)
    return pm


def programs_of(pm: pretty_midi.PrettyMIDI) -> dict[str, int]:
    """Part name -> GM program (for drums: the bank-128 kit preset) of a composed score."""
    return {inst.name: int(inst.program) for inst in pm.instruments}
