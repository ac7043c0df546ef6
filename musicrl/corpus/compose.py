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
from musicrl.corpus.styles import (
    CRASH,
    HIGH_TOM,
    LOW_TOM,
    MID_TOM,
    SCALES,
    SNARE,
    Chord,
    Style,
    get_style,
    parse_chord,
)

# Base velocity of each energy level, and how it scales melody density.
ENERGY_VELOCITY = {"low": 60, "medium": 80, "high": 100}
ENERGY_DENSITY = {"low": 0.75, "medium": 1.0, "high": 1.25}
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


# ----------------------------------------------------------------------------------------------
# Voicings


def _close_voicing(chord: Chord, previous: list[int] | None, low: int = 50, high: int = 70) -> list[int]:
    """Close-position voicing within [low, high] that moves least from ``previous``."""
    pcs = list(chord.pitch_classes)
    candidates = []
    for inversion in range(len(pcs)):
        order = pcs[inversion:] + pcs[:inversion]
        for bottom in range(low, low + 12):
            if bottom % 12 != order[0]:
                continue
            notes = [bottom]
            for pc in order[1:]:
                notes.append(notes[-1] + (pc - notes[-1]) % 12 or 12)
            if notes[-1] <= high:
                candidates.append(notes)
    if not candidates:  # a wide chord: fall back to root position from the bottom
        return [low + (chord.root - low) % 12 + i for i in chord.intervals]

    def cost(notes: list[int]) -> float:
        inverted = 2.0 if notes[0] % 12 != chord.root else 0.0  # root in the bass reads clearer
        if previous and len(previous) == len(notes):
            return float(sum(abs(a - b) for a, b in zip(notes, previous, strict=True))) + inverted
        # No previous chord: start in root position.
        return abs(float(np.mean(notes)) - (low + high) / 2) * len(notes) + 6 * inverted

    return min(candidates, key=cost)


def _power_voicing(chord: Chord, low: int = 40) -> list[int]:
    root = low + (chord.root - low) % 12
    return [root, root + 7, root + 12]


def _arpeggio_note(chord: Chord, token: str, low: int = 48) -> int:
    root = low + (chord.root - low) % 12
    tones = [root + i for i in chord.intervals]
    index = {"1": 0, "3": 1, "5": 2}.get(token)
    if index is not None:
        return tones[min(index, len(tones) - 1)]
    if token == "7":
        return tones[3] if len(tones) > 3 else root + 12
    return root + 12  # "8"


# ----------------------------------------------------------------------------------------------
# Parts


def _chord_track(style: Style, mode: str, tonic: int, rng: np.random.Generator, n_bars: int) -> list[Chord]:
    """One chord per bar, from a progression of the style in the key."""
    progressions = style.major_progressions if mode == "major" else style.minor_progressions
    symbols = str(rng.choice(progressions)).split()
    return [parse_chord(symbols[(bar // style.bars_per_chord) % len(symbols)], tonic) for bar in range(n_bars)]


def _melody_scale(style: Style, mode: str) -> tuple[int, ...]:
    if style.melody_scale == "blues":
        return SCALES["blues"]
    if style.melody_scale == "pentatonic":
        return SCALES[f"{mode} pentatonic"]
    return SCALES[mode]


def _local_scale(scale_pcs: list[int], chord: Chord, bend: bool) -> list[int]:
    """Key scale adjusted to a chord: a chord tone outside the scale replaces the scale note a
    semitone away (the raised leading tone over V7 in minor, the flat seventh over bVII...)."""
    pcs = list(scale_pcs)
    if bend:
        for tone in chord.pitch_classes:
            if tone in pcs:
                continue
            for i, pc in enumerate(pcs):
                if (tone - pc) % 12 in (1, 11):
                    pcs[i] = tone
                    break
    return sorted(set(pcs))


def _motif_rhythm(style: Style, density: float, rng: np.random.Generator, bars: int = 2) -> list[int]:
    """Onset steps of a motif of ``bars`` bars, drawn with metric weights (downbeats likeliest)."""
    spb = style.steps_per_beat
    subdivision = style.melody_subdivision
    if spb == 4:
        positions = {1: [0], 2: [0, 2], 4: [0, 1, 2, 3]}[subdivision]
    else:
        positions = {1: [0], 2: [0, 2], 4: [0, 1, 2]}[subdivision]
    position_weight = {0: 1.0, 1: 0.35, 2: 0.6, 3: 0.35}
    beat_weight = (1.0, 0.7, 0.85, 0.7)
    beat_total = sum(position_weight[p] for p in positions)
    scale = density / beat_total
    onsets = []
    for beat in range(4 * bars):
        for p in positions:
            w = beat_weight[beat % 4] * position_weight[p]
            if rng.random() < min(0.95, scale * w):
                onsets.append(beat * spb + p)
    for b in range(bars):  # at least two notes a bar: no bar-long holes in the tune
        in_bar = [s for s in onsets if b * 4 * spb <= s < (b + 1) * 4 * spb]
        for extra in (b * 4 * spb, b * 4 * spb + 2 * spb)[: max(0, 2 - len(in_bar))]:
            if extra not in onsets:
                onsets.append(extra)
    onsets = sorted(set(onsets))
    if onsets[0] != 0:
        onsets.insert(0, 0)
    return onsets


def _moves(rng: np.random.Generator, n: int) -> list[int]:
    """Scale-step moves of a motif: mostly steps, some leaps, a few repeats."""
    choices = np.array([-4, -3, -2, -1, 0, 1, 2, 3, 4])
    probs = np.array([0.03, 0.05, 0.14, 0.24, 0.08, 0.24, 0.14, 0.05, 0.03])
    return [int(x) for x in rng.choice(choices, size=n, p=probs)]


def _melody(
    style: Style, mode: str, tonic: int, chords: list[Chord], energy: str, rng: np.random.Generator, n_bars: int
) -> list[tuple[int, int, int, float]]:
    """Melody as (onset step, length in steps, MIDI pitch, accent 0..1), centred near C5.

    Phrases of 8 bars: motif A, A' (same rhythm and moves, the last two re-drawn), a contrasting
    B, and A again ending on the tonic. Pitches walk the (chord-adjusted) scale by the motif's
    moves; notes on strong beats or lasting a beat or more snap to the nearest chord tone.
    """
    spb = style.steps_per_beat
    bar = style.steps_per_bar
    density = style.melody_density * ENERGY_DENSITY[energy]
    scale_pcs = [(tonic + s) % 12 for s in _melody_scale(style, mode)]
    bend = style.melody_scale == "key"
    center = 72 + ((tonic - 72) % 12 if (tonic - 72) % 12 < 6 else (tonic - 72) % 12 - 12)

    rhythm_a = _motif_rhythm(style, density, rng)
    moves_a = _moves(rng, len(rhythm_a))
    rhythm_b = _motif_rhythm(style, density, rng)
    moves_b = _moves(rng, len(rhythm_b))
    moves_a2 = moves_a[:-2] + _moves(rng, 2) if len(moves_a) > 2 else _moves(rng, len(moves_a))
    sections = [(rhythm_a, moves_a), (rhythm_a, moves_a2), (rhythm_b, moves_b), (rhythm_a, moves_a)]

    events: list[tuple[int, int]] = []  # (onset step, move)
    for unit in range(math.ceil(n_bars / 2)):
        rhythm, moves = sections[unit % 4]
        events += [(unit * 2 * bar + step, move) for step, move in zip(rhythm, moves, strict=True)]
    total_steps = n_bars * bar
    events = [e for e in events if e[0] < total_steps]

    notes = []
    pitch = center
    for i, (step, move) in enumerate(events):
        nxt = events[i + 1][0] if i + 1 < len(events) else total_steps
        length = max(1, min(nxt - step, 4 * spb))
        boundary = (step // (2 * bar) + 1) * 2 * bar
        if nxt >= boundary and boundary - step > spb:  # breathe before the next motif
            length = min(length, boundary - step - spb // 2)
        chord = chords[min(step // bar, len(chords) - 1)]
        pcs = _local_scale(scale_pcs, chord, bend)
        candidates = [p for p in range(center - 14, center + 15) if p % 12 in pcs]
        if i == 0:
            target = center
        else:
            if abs(pitch - center) > 7 and np.sign(move) == np.sign(pitch - center):
                move = -move  # keep the tune near its centre
            here = min(range(len(candidates)), key=lambda j: abs(candidates[j] - pitch))
            target = candidates[int(np.clip(here + move, 0, len(candidates) - 1))]
        unit_end = (step // (2 * bar)) % 4 == 3 and nxt >= boundary
        strong = step % (2 * spb) == 0
        if unit_end:  # cadence of the phrase: the tonic
            pool = [p for p in range(center - 12, center + 13) if p % 12 == tonic]
        elif strong or length >= spb:
            pool = [p for p in range(center - 14, center + 15) if p % 12 in chord.pitch_classes]
            if i > 0 and move != 0 and len(pool) > 1:  # a move is a move: do not snap back onto the last note
                pool = [p for p in pool if p != pitch] or pool
        else:
            pool = [target]
        # On strong beats (most on downbeats) the tonic, then the chord root, win near-ties, so the
        # key is heard where the ear weighs it most; elsewhere the candidate nearest the target.
        tonic_bonus, root_bonus = (1.1, 0.6) if step % bar == 0 else (0.6, 0.3) if strong else (0.0, 0.0)
        pitch = min(
            pool,
            key=lambda p: (abs(p - target) - tonic_bonus * (p % 12 == tonic) - root_bonus * (p % 12 == chord.root), p),
        )
        beat_pos = step % bar
        accent = 1.0 if beat_pos == 0 else 0.6 if beat_pos % spb == 0 else 0.3
        notes.append((step, length, pitch, accent))
    return notes


def _fit_range(pitches: list[int], low: int, high: int) -> int:
    """Octave shift that puts a melody inside [low, high], centred a little above the middle."""
    if not pitches:
        return 0
    target = low + 0.58 * (high - low)
    shifts = range(-36, 37, 12)

    def cost(shift: int) -> tuple[int, float]:
        outside = sum(1 for p in pitches if not low <= p + shift <= high)
        return outside, abs(float(np.mean(pitches)) + shift - target)

    return min(shifts, key=cost)


def _bass_pitch(token: str, chord: Chord, next_chord: Chord, low: int) -> int:
    root = low + (chord.root - low) % 12
    if token in "Rr":
        return root
    if token == "F":  # the chord's own fifth (diminished in a half-diminished chord)
        return root + (chord.intervals[2] if len(chord.intervals) > 2 else 7)
    if token == "O":
        return root + 12
    if token == "T":
        return root + chord.intervals[1]
    if token == "X":
        return root + 9
    if token == "S":
        return root + 10
    next_root = low + (next_chord.root - low) % 12
    return next_root - 1  # "A": chromatic approach from below


def _walking_bass(chords: list[Chord], style: Style, rng: np.random.Generator) -> list[tuple[int, int]]:
    """Quarter-note walking line: root on the downbeat, chord/scale tones between, a chromatic
    approach into the next bar's root on beat 4. Returns (step, pitch)."""
    spb = style.steps_per_beat
    low = style.bass_low
    line = []
    for bar, chord in enumerate(chords):
        nxt = chords[bar + 1] if bar + 1 < len(chords) else chords[0]
        root = low + (chord.root - low) % 12
        tones = [root + i for i in chord.intervals] + [root + 12]
        next_root = low + (nxt.root - low) % 12
        for beat in range(4):
            if beat == 0:
                pitch = root
            elif beat == 3:
                pitch = next_root + (1 if rng.random() < 0.4 else -1)
            else:
                pitch = int(rng.choice(tones[1:]))
            line.append((bar * 4 * spb + beat * spb, pitch))
    return line


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

    chords = _chord_track(style, composition.mode, tonic, rng, n_bars)
    melody = _melody(style, composition.mode, tonic, chords, energy, rng, n_bars)
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
    shift = _fit_range([p for _, _, p, _ in melody], *LEAD_RANGES[lead])
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
            voicing = _power_voicing(chord) if style.comp_voicing == "power" else _close_voicing(chord, previous)
            previous = voicing
            for pitch in voicing:
                add(comp_inst, start, end, pitch, base - 14 + (10 if token == "X" else 0), 0.003)
        else:
            add(comp_inst, start, end, _arpeggio_note(chord, token), base - 12 + (4 if step % bar == 0 else 0))
    pm.instruments.append(comp_inst)

    if use_pad:
        pad_inst = _instrument("pad", pad_program, style.reverb, boost_db=boost)
        pad_prev: list[int] | None = None
        for b, chord in enumerate(chords):
            if b % style.bars_per_chord == 0:
                pad_prev = _close_voicing(chord, pad_prev, 55, 76)
                end = clock.time((b + style.bars_per_chord) * bar)
                for pitch in pad_prev:
                    add(pad_inst, clock.time(b * bar), end, pitch, base - 22, 0.0)
        pm.instruments.append(pad_inst)

    # Bass.
    bass_inst = _instrument("bass", bass_program, style.reverb // 3, boost_db=boost)
    if "W" in bass_pattern:
        line = _walking_bass(chords, style, rng)
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
                _bass_pitch(token, chord, nxt, style.bass_low),
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
