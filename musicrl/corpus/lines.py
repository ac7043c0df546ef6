"""The note-level material of a composition: chord voicings, melodies and bass lines.

``compose`` (compose.py) arranges these into parts; every function here is pure, with its random
choices drawn from the generator it is given.
"""

from __future__ import annotations

import math

import numpy as np

from musicrl.corpus.styles import SCALES, Chord, Style, parse_chord

# How energy scales melody density (and compose.py scales velocity by ENERGY_VELOCITY).
ENERGY_DENSITY = {"low": 0.75, "medium": 1.0, "high": 1.25}


# ----------------------------------------------------------------------------------------------
# Voicings


def close_voicing(chord: Chord, previous: list[int] | None, low: int = 50, high: int = 70) -> list[int]:
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


def power_voicing(chord: Chord, low: int = 40) -> list[int]:
    root = low + (chord.root - low) % 12
    return [root, root + 7, root + 12]


def arpeggio_note(chord: Chord, token: str, low: int = 48) -> int:
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


def chord_track(style: Style, mode: str, tonic: int, rng: np.random.Generator, n_bars: int) -> list[Chord]:
    """One chord per bar, from a progression of the style in the key."""
    progressions = style.major_progressions if mode == "major" else style.minor_progressions
    symbols = str(rng.choice(progressions)).split()
    return [parse_chord(symbols[(bar // style.bars_per_chord) % len(symbols)], tonic) for bar in range(n_bars)]


def melody_scale(style: Style, mode: str) -> tuple[int, ...]:
    if style.melody_scale == "blues":
        return SCALES["blues"]
    if style.melody_scale == "pentatonic":
        return SCALES[f"{mode} pentatonic"]
    return SCALES[mode]


def local_scale(scale_pcs: list[int], chord: Chord, bend: bool) -> list[int]:
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


def motif_rhythm(style: Style, density: float, rng: np.random.Generator, bars: int = 2) -> list[int]:
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


def draw_moves(rng: np.random.Generator, n: int) -> list[int]:
    """Scale-step moves of a motif: mostly steps, some leaps, a few repeats."""
    choices = np.array([-4, -3, -2, -1, 0, 1, 2, 3, 4])
    probs = np.array([0.03, 0.05, 0.14, 0.24, 0.08, 0.24, 0.14, 0.05, 0.03])
    return [int(x) for x in rng.choice(choices, size=n, p=probs)]


def make_melody(
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
    scale_pcs = [(tonic + s) % 12 for s in melody_scale(style, mode)]
    bend = style.melody_scale == "key"
    center = 72 + ((tonic - 72) % 12 if (tonic - 72) % 12 < 6 else (tonic - 72) % 12 - 12)

    rhythm_a = motif_rhythm(style, density, rng)
    moves_a = draw_moves(rng, len(rhythm_a))
    rhythm_b = motif_rhythm(style, density, rng)
    moves_b = draw_moves(rng, len(rhythm_b))
    moves_a2 = moves_a[:-2] + draw_moves(rng, 2) if len(moves_a) > 2 else draw_moves(rng, len(moves_a))
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
        pcs = local_scale(scale_pcs, chord, bend)
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


def fit_range(pitches: list[int], low: int, high: int) -> int:
    """Octave shift that puts a melody inside [low, high], centred a little above the middle."""
    if not pitches:
        return 0
    target = low + 0.58 * (high - low)
    shifts = range(-36, 37, 12)

    def cost(shift: int) -> tuple[int, float]:
        outside = sum(1 for p in pitches if not low <= p + shift <= high)
        return outside, abs(float(np.mean(pitches)) + shift - target)

    return min(shifts, key=cost)


def bass_pitch(token: str, chord: Chord, next_chord: Chord, low: int) -> int:
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


def walking_bass(chords: list[Chord], style: Style, rng: np.random.Generator) -> list[tuple[int, int]]:
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
