"""Style definitions of the procedural corpus: what makes techno sound like techno.

Each style is data, not code: a tempo range, chord progressions in Roman numerals (major and minor
keys), drum / bass / accompaniment patterns on a step grid, the General MIDI programs that may play
each part, the lead instruments and moods it allows, and how busy its melodies are. ``compose.py``
reads these and nothing else, so a new style is one entry in ``STYLE_TABLE``. The harmony
vocabulary the tables are written in (scales, ``parse_chord`` for Roman numerals) lives here too.

Pattern strings have one character per grid step; a bar has ``4 * steps_per_beat`` steps (16 for
straight sixteenths, 12 for the triplet grid of swing styles) and a pattern may span several bars.

- drums: ``X`` accent, ``x`` normal, ``o`` ghost, ``.`` rest (one string per GM drum note).
- bass: ``R`` root, ``r`` ghost root, ``F`` fifth, ``O`` octave, ``T`` chord third, ``X`` sixth,
  ``S`` flat seventh, ``A`` chromatic approach to the next chord's root, ``W`` walking-bass note,
  ``-`` hold the previous note, ``.`` rest.
- accompaniment: ``x`` chord, ``X`` accented chord, ``1 3 5 7 8`` single chord tones (root, third,
  fifth, seventh or octave: arpeggios), ``-`` hold, ``.`` rest.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from musicrl.corpus.attributes import LEAD_INSTRUMENTS, MOODS, STYLES

# General MIDI percussion keys (channel 10).
KICK, SIDE_STICK, SNARE, CLAP, E_SNARE = 36, 37, 38, 39, 40
CLOSED_HAT, PEDAL_HAT, OPEN_HAT, CRASH, RIDE = 42, 44, 46, 49, 51
LOW_TOM, MID_TOM, HIGH_TOM = 45, 47, 50
TAMBOURINE, COWBELL, MARACAS, SHAKER = 54, 56, 70, 82

# GM drum kits (bank 128 presets in TimGM6mb.sf2).
KIT_STANDARD, KIT_ROOM, KIT_POWER, KIT_ELECTRONIC, KIT_808, KIT_JAZZ, KIT_BRUSH = 0, 8, 16, 24, 25, 32, 40


# ----------------------------------------------------------------------------------------------
# Harmony: scales and Roman-numeral chords

SCALES: dict[str, tuple[int, ...]] = {
    "major": (0, 2, 4, 5, 7, 9, 11),
    "minor": (0, 2, 3, 5, 7, 8, 10),
    "major pentatonic": (0, 2, 4, 7, 9),
    "minor pentatonic": (0, 3, 5, 7, 10),
    "blues": (0, 3, 5, 6, 7, 10),
}
_DEGREES = {"i": 0, "ii": 2, "iii": 4, "iv": 5, "v": 7, "vi": 9, "vii": 11}
_CHORD_RE = re.compile(r"^(b|#)?(VII|VI|V|IV|III|II|I|vii|vi|v|iv|iii|ii|i)(.*)$")


@dataclass(frozen=True)
class Chord:
    """A chord as a root pitch class and intervals above it (semitones)."""

    root: int
    intervals: tuple[int, ...]

    @property
    def pitch_classes(self) -> tuple[int, ...]:
        return tuple((self.root + i) % 12 for i in self.intervals)


def parse_chord(symbol: str, tonic: int) -> Chord:
    """Roman numeral -> Chord in the key of ``tonic``.

    Upper case is major, lower case minor; a ``b``/``#`` prefix moves the root a semitone.
    Suffixes: ``7`` (dominant on upper case, minor seventh on lower case), ``maj7``, ``hd7``
    (half-diminished), ``dim``, ``sus4``, ``5`` (power chord). E.g. in C: ``bVII`` = Bb major,
    ``ii7`` = D minor seventh, ``V7`` = G dominant seventh.
    """
    match = _CHORD_RE.match(symbol)
    if match is None:
        raise ValueError(f"cannot parse chord symbol {symbol!r}")
    accidental, numeral, suffix = match.groups()
    root = tonic + _DEGREES[numeral.lower()] + {"b": -1, "#": 1, None: 0}[accidental]
    minor = numeral.islower()
    qualities = {
        "": (0, 3, 7) if minor else (0, 4, 7),
        "7": (0, 3, 7, 10) if minor else (0, 4, 7, 10),
        "maj7": (0, 4, 7, 11),
        "hd7": (0, 3, 6, 10),
        "dim": (0, 3, 6),
        "sus4": (0, 5, 7),
        "5": (0, 7),
    }
    if suffix not in qualities:
        raise ValueError(f"unknown chord quality {suffix!r} in {symbol!r}")
    return Chord(root % 12, qualities[suffix])


@dataclass(frozen=True)
class Style:
    """Everything the composer needs to know about one style (see the module docstring)."""

    name: str
    tempo_range: tuple[int, int]  # quarter-note BPM, inclusive
    steps_per_beat: int  # 4: straight sixteenths; 3: swung triplet grid
    swing: float  # delay of off-beat sixteenths, as a fraction of a step (straight grid only)
    major_progressions: tuple[str, ...]
    minor_progressions: tuple[str, ...]
    bars_per_chord: int
    drum_probability: float  # chance that a composition of this style has drums
    drum_kits: tuple[int, ...]
    drum_patterns: tuple[dict[int, str], ...]
    crash_and_fills: bool  # crash on phrase starts and a fill closing each 4-bar phrase
    bass_patterns: tuple[str, ...]
    bass_programs: tuple[int, ...]
    bass_low: int  # lowest MIDI pitch for a bass root
    comp_patterns: tuple[str, ...]
    comp_programs: tuple[int, ...]
    comp_voicing: str  # "close" (triads / sevenths around middle C), "power" (root-fifth-octave)
    pad_programs: tuple[int, ...]  # optional sustained layer; empty = never
    leads: tuple[str, ...]
    moods: tuple[str, ...]
    melody_density: float  # mean note onsets per beat at medium energy
    melody_subdivision: int  # finest melody grid: 1 quarters, 2 eighths, 4 sixteenths
    melody_scale: str  # "key", "pentatonic" or "blues"
    reverb: int  # reverb send (CC 91), 0-127

    @property
    def steps_per_bar(self) -> int:
        return 4 * self.steps_per_beat


STYLE_TABLE: dict[str, Style] = {}


def _add(style: Style) -> None:
    STYLE_TABLE[style.name] = style


_add(
    Style(
        name="techno",
        tempo_range=(124, 140),
        steps_per_beat=4,
        swing=0.0,
        major_progressions=("I I bVII bVII", "I IV vi IV", "I I IV V"),
        minor_progressions=("i i bVI bVII", "i i i bVII", "i iv i bVI", "i bVII bVI bVII"),
        bars_per_chord=1,
        drum_probability=1.0,
        drum_kits=(KIT_ELECTRONIC, KIT_808),
        drum_patterns=(
            {KICK: "X...X...X...X...", CLOSED_HAT: "..x...x...x...x.", CLAP: "....x.......x..."},
            {
                KICK: "X...X...X...X...",
                OPEN_HAT: "..x...x...x...x.",
                CLOSED_HAT: "x.o.x.o.x.o.x.o.",
                CLAP: "....X.......X...",
            },
            {
                KICK: "X...X...X...X..o",
                RIDE: "..x...x...x...x.",
                CLOSED_HAT: "oooooooooooooooo",
                E_SNARE: "....x.......x...",
            },
        ),
        crash_and_fills=False,
        bass_patterns=("..R...R...R...R.", ".RR..RR..RR..RR.", "R.RrR.RrR.RrR.Rr"),
        bass_programs=(38, 39),
        bass_low=33,
        comp_patterns=("..x...x...x...x.", "x..x..x...x..x..", "x-------x-------"),
        comp_programs=(90, 50, 81, 62),
        comp_voicing="close",
        pad_programs=(95, 89),
        leads=("synth lead", "electric piano", "organ"),
        moods=("dark", "energetic", "aggressive", "uplifting"),
        melody_density=1.0,
        melody_subdivision=4,
        melody_scale="key",
        reverb=50,
    )
)

_add(
    Style(
        name="house",
        tempo_range=(118, 128),
        steps_per_beat=4,
        swing=0.0,
        major_progressions=("I vi IV V", "Imaj7 vi7 ii7 V7", "I V vi IV", "I IV vi V"),
        minor_progressions=("i7 iv7 i7 v7", "i bVII bVI bVII", "i7 bVImaj7 bVII i7"),
        bars_per_chord=1,
        drum_probability=1.0,
        drum_kits=(KIT_ELECTRONIC, KIT_808),
        drum_patterns=(
            {
                KICK: "X...X...X...X...",
                CLAP: "....X.......X...",
                OPEN_HAT: "..x...x...x...x.",
                MARACAS: "oxoooxoooxoooxoo",
            },
            {
                KICK: "X...X...X...X...",
                CLAP: "....X.......X...",
                OPEN_HAT: "..x...x...x...x.",
                CLOSED_HAT: "x..ox..ox..ox..o",
            },
            {
                KICK: "X...X...X...X...",
                CLAP: "....X.......X..o",
                CLOSED_HAT: "xoxoxoxoxoxoxoxo",
                TAMBOURINE: "....x.......x...",
            },
        ),
        crash_and_fills=False,
        bass_patterns=("..R...R...R...R.", "R..R..O.R..O..R.", "R-..R-..O...F..."),
        bass_programs=(38, 33, 39),
        bass_low=33,
        comp_patterns=("x..x..x...x..x..", "..x...x...x...x.", ".x..x..x.x..x..x"),
        comp_programs=(0, 4, 16, 90),
        comp_voicing="close",
        pad_programs=(89, 49),
        leads=("piano", "synth lead", "organ", "electric piano", "saxophone"),
        moods=("happy", "uplifting", "energetic", "relaxed", "dreamy"),
        melody_density=1.0,
        melody_subdivision=4,
        melody_scale="key",
        reverb=45,
    )
)

_add(
    Style(
        name="rock",
        tempo_range=(100, 150),
        steps_per_beat=4,
        swing=0.0,
        major_progressions=("I IV V IV", "I V vi IV", "I bVII IV I", "I IV I V"),
        minor_progressions=("i bVI bVII i", "i bVII bVI bVII", "i iv bVII i", "i bIII bVII iv"),
        bars_per_chord=1,
        drum_probability=1.0,
        drum_kits=(KIT_STANDARD, KIT_ROOM, KIT_POWER),
        drum_patterns=(
            {KICK: "X.....x.X.......", SNARE: "....X.......X...", CLOSED_HAT: "x.x.x.x.x.x.x.x."},
            {KICK: "X.......X.x.....", SNARE: "....X.......X...", CLOSED_HAT: "x.x.x.x.x.x.x.x."},
            {KICK: "X.x.....X.x.....", SNARE: "....X.......X...", RIDE: "x.x.x.x.x.x.x.x."},
        ),
        crash_and_fills=True,
        bass_patterns=("R.R.R.R.R.R.R.R.", "R...R.R.R...R.R.", "R-------R---F---"),
        bass_programs=(33, 34),
        bass_low=28,
        comp_patterns=("x.x.x.x.x.x.x.x.", "x-------x---x---", "x-x-x-x-x-x-x-x-"),
        comp_programs=(29, 30, 27),
        comp_voicing="power",
        pad_programs=(),
        leads=("electric guitar", "distorted guitar", "organ", "piano"),
        moods=("energetic", "happy", "aggressive", "melancholic", "uplifting"),
        melody_density=1.2,
        melody_subdivision=2,
        melody_scale="pentatonic",
        reverb=35,
    )
)

_add(
    Style(
        name="metal",
        tempo_range=(130, 180),
        steps_per_beat=4,
        swing=0.0,
        major_progressions=(),
        minor_progressions=("i bVI bVII i", "i i bII i", "i bVII bVI v", "i iv bVI bVII"),
        bars_per_chord=1,
        drum_probability=1.0,
        drum_kits=(KIT_POWER, KIT_STANDARD),
        drum_patterns=(
            {KICK: "xxxxxxxxxxxxxxxx", SNARE: "....X.......X...", RIDE: "x.x.x.x.x.x.x.x."},
            {KICK: "X.xxX.xxX.xxX.xx", SNARE: "....X.......X...", CLOSED_HAT: "x.x.x.x.x.x.x.x."},
            {KICK: "X.x.X.x.X.x.X.x.", SNARE: "....X.......X...", CRASH: "x.......x......."},
        ),
        crash_and_fills=True,
        bass_patterns=("RRRRRRRRRRRRRRRR", "R.RRR.RRR.RRR.RR", "R.R.R.R.R.R.R.R."),
        bass_programs=(34, 33),
        bass_low=28,
        comp_patterns=("xxxxxxxxxxxxxxxx", "x.xxx.xxx.xxx.xx", "x-x-x.x-x-x-x.x-"),
        comp_programs=(30, 29),
        comp_voicing="power",
        pad_programs=(),
        leads=("distorted guitar", "synth lead", "violin"),
        moods=("aggressive", "dark", "energetic"),
        melody_density=1.6,
        melody_subdivision=4,
        melody_scale="key",
        reverb=30,
    )
)

_add(
    Style(
        name="pop",
        tempo_range=(90, 128),
        steps_per_beat=4,
        swing=0.0,
        major_progressions=("I V vi IV", "I IV vi V", "I vi IV V", "I V IV V"),
        minor_progressions=("i bVI bIII bVII", "i bVII bVI bVII", "i iv bVI bVII"),
        bars_per_chord=1,
        drum_probability=0.9,
        drum_kits=(KIT_STANDARD, KIT_ELECTRONIC),
        drum_patterns=(
            {KICK: "X.......X.......", SNARE: "....X.......X...", CLOSED_HAT: "x.x.x.x.x.x.x.x."},
            {
                KICK: "X.....x.X.......",
                CLAP: "....X.......X...",
                CLOSED_HAT: "x.o.x.o.x.o.x.o.",
                TAMBOURINE: "....x.......x...",
            },
            {KICK: "X..x..x.X.......", SNARE: "....X.......X...", CLOSED_HAT: "xxxxxxxxxxxxxxxx"},
        ),
        crash_and_fills=True,
        bass_patterns=("R...R...R...R...", "R.....R.R...F...", "R.R.R.R.R.R.R.R."),
        bass_programs=(33, 38),
        bass_low=33,
        comp_patterns=("x.x.x.x.x.x.x.x.", "x---x---x---x---", "x--x--x-x--x--x-"),
        comp_programs=(0, 25, 4, 48),
        comp_voicing="close",
        pad_programs=(49, 89),
        leads=("piano", "acoustic guitar", "synth lead", "strings", "electric guitar", "flute"),
        moods=("happy", "uplifting", "melancholic", "relaxed", "energetic"),
        melody_density=1.0,
        melody_subdivision=2,
        melody_scale="key",
        reverb=40,
    )
)

_add(
    Style(
        name="jazz",
        tempo_range=(80, 170),
        steps_per_beat=3,
        swing=0.0,
        major_progressions=("Imaj7 ii7 V7 Imaj7", "Imaj7 vi7 ii7 V7", "Imaj7 IVmaj7 ii7 V7", "Imaj7 VI7 ii7 V7"),
        minor_progressions=("i7 iihd7 V7 i7", "i7 iv7 iihd7 V7", "i7 bVI7 iihd7 V7"),
        bars_per_chord=1,
        drum_probability=0.85,
        drum_kits=(KIT_JAZZ, KIT_BRUSH),
        drum_patterns=(
            {RIDE: "X..x.xX..x.x", PEDAL_HAT: "...X.....X..", KICK: "o.....o....."},
            {RIDE: "X..x.xX..x.x", PEDAL_HAT: "...X.....X..", SNARE: ".....o.....o", KICK: "o..........."},
        ),
        crash_and_fills=False,
        bass_patterns=("W..W..W..W..",),
        bass_programs=(32,),
        bass_low=31,
        comp_patterns=("...x.....x..", "x.....x..x..", "..x.....x...", "x-.....x...."),
        comp_programs=(0, 26, 4),
        comp_voicing="close",
        pad_programs=(),
        leads=("saxophone", "trumpet", "piano", "vibraphone", "electric guitar", "clarinet"),
        moods=("relaxed", "calm", "happy", "melancholic", "dreamy"),
        melody_density=1.5,
        melody_subdivision=2,
        melody_scale="key",
        reverb=35,
    )
)

_add(
    Style(
        name="blues",
        tempo_range=(60, 110),
        steps_per_beat=3,
        swing=0.0,
        major_progressions=("I7 IV7 I7 I7 IV7 IV7 I7 I7 V7 IV7 I7 V7", "I7 I7 IV7 IV7", "I7 IV7 I7 V7"),
        minor_progressions=("i7 iv7 i7 i7 iv7 iv7 i7 i7 bVI7 V7 i7 V7", "i7 i7 iv7 iv7", "i7 iv7 i7 V7"),
        bars_per_chord=1,
        drum_probability=0.85,
        drum_kits=(KIT_STANDARD, KIT_JAZZ),
        drum_patterns=(
            {KICK: "X.....x.....", SNARE: "...X.....X..", CLOSED_HAT: "x.xx.xx.xx.x"},
            {KICK: "X..x..X..x..", SNARE: "...X.....X..", RIDE: "x.xx.xx.xx.x"},
        ),
        crash_and_fills=True,
        bass_patterns=("R..T..F..X..S..X..F..T..", "R.rR.rF.rF.r", "R..R..F..F.."),
        bass_programs=(33, 32),
        bass_low=33,
        comp_patterns=("x..x..x..x..", "x-.x-.x-.x-.", ".x..x..x..x."),
        comp_programs=(0, 16, 26),
        comp_voicing="close",
        pad_programs=(),
        leads=("electric guitar", "harmonica", "piano", "organ", "saxophone"),
        moods=("melancholic", "relaxed", "dark", "energetic"),
        melody_density=1.0,
        melody_subdivision=2,
        melody_scale="blues",
        reverb=35,
    )
)

_add(
    Style(
        name="funk",
        tempo_range=(92, 118),
        steps_per_beat=4,
        swing=0.08,
        major_progressions=("I7 I7 IV7 I7", "I7 IV7 I7 IV7", "I7 I7 bVII7 IV7"),
        minor_progressions=("i7 i7 IV7 IV7", "i7 IV7 i7 IV7", "i7 i7 bVII7 i7"),
        bars_per_chord=1,
        drum_probability=1.0,
        drum_kits=(KIT_STANDARD, KIT_ROOM),
        drum_patterns=(
            {KICK: "X.x...x...X..x..", SNARE: "....X..o.o..X..o", CLOSED_HAT: "XxoxXxoxXxoxXxox"},
            {KICK: "X..x..x...x.x...", SNARE: "....X.o.....X.o.", CLOSED_HAT: "x.xxx.xxx.xxx.xx"},
        ),
        crash_and_fills=True,
        bass_patterns=("R..R..O.R.R..O.R", "R.rO..R.r.O.R..r", "R-.R.OR..R.F.O.R"),
        bass_programs=(36, 33),
        bass_low=28,
        comp_patterns=("x.xx..x.x.xx..x.", ".x.x.xx..x.x.xx.", "x..x..x...x.x..."),
        comp_programs=(7, 27, 4),
        comp_voicing="close",
        pad_programs=(),
        leads=("saxophone", "trumpet", "synth lead", "organ", "electric piano"),
        moods=("happy", "energetic", "uplifting"),
        melody_density=1.4,
        melody_subdivision=4,
        melody_scale="pentatonic",
        reverb=25,
    )
)

_add(
    Style(
        name="hip-hop",
        tempo_range=(80, 98),
        steps_per_beat=4,
        swing=0.22,
        major_progressions=("Imaj7 vi7 ii7 V7", "Imaj7 IVmaj7 iii7 vi7", "Imaj7 IVmaj7"),
        minor_progressions=("i7 iv7", "i7 bVImaj7 bVII i7", "i7 i7 bVImaj7 V7", "i bVI bIII bVII"),
        bars_per_chord=1,
        drum_probability=1.0,
        drum_kits=(KIT_808, KIT_STANDARD),
        drum_patterns=(
            {KICK: "X......x..X.....", SNARE: "....X.......X...", CLOSED_HAT: "x.x.x.x.x.x.x.x."},
            {KICK: "X.x.......X..x..", SNARE: "....X.......X...", CLOSED_HAT: "x.xxx.x.x.xxx.x."},
            {KICK: "X......x.x......", CLAP: "........X.......", CLOSED_HAT: "x.x.x.x.xxx.x.xx"},
        ),
        crash_and_fills=False,
        bass_patterns=("R-----R.R-------", "R-.R---.....F-..", "R-------R---O---"),
        bass_programs=(38, 33, 32),
        bass_low=28,
        comp_patterns=("x---------------", "x-----x---------", "x-------x-------"),
        comp_programs=(4, 0, 48),
        comp_voicing="close",
        pad_programs=(89, 49),
        leads=("electric piano", "piano", "flute", "synth lead", "strings", "saxophone"),
        moods=("relaxed", "dark", "melancholic", "dreamy", "energetic"),
        melody_density=0.8,
        melody_subdivision=4,
        melody_scale="key",
        reverb=30,
    )
)

_add(
    Style(
        name="reggae",
        tempo_range=(66, 90),
        steps_per_beat=4,
        swing=0.15,
        major_progressions=("I IV I IV", "I V vi IV", "I IV V IV", "I ii V I"),
        minor_progressions=("i iv i iv", "i bVII i bVII", "i bVI bVII i"),
        bars_per_chord=1,
        drum_probability=1.0,
        drum_kits=(KIT_STANDARD, KIT_ROOM),
        drum_patterns=(
            {KICK: "........X.......", SIDE_STICK: "........X.......", CLOSED_HAT: "x.x.x.x.x.x.x.x."},
            {KICK: "X...X...X...X...", SIDE_STICK: "........X.......", CLOSED_HAT: "..x...x...x...x."},
        ),
        crash_and_fills=False,
        bass_patterns=("R--.R.F.....T.F.", "..R.R.F...R.O.F.", "R-.R..F.R-..F..."),
        bass_programs=(33, 32),
        bass_low=28,
        comp_patterns=("....x.......x...", "..x...x...x...x."),
        comp_programs=(27, 16, 0),
        comp_voicing="close",
        pad_programs=(16,),
        leads=("organ", "trumpet", "saxophone", "electric guitar", "piano", "harmonica"),
        moods=("relaxed", "happy", "calm", "uplifting"),
        melody_density=0.9,
        melody_subdivision=2,
        melody_scale="key",
        reverb=35,
    )
)

_add(
    Style(
        name="bossa nova",
        tempo_range=(120, 145),
        steps_per_beat=4,
        swing=0.0,
        major_progressions=("Imaj7 II7 ii7 V7", "Imaj7 VI7 ii7 V7", "Imaj7 vi7 ii7 V7"),
        minor_progressions=("i7 iv7 V7 i7", "i7 iv7 bVImaj7 V7", "i7 i7 iv7 V7"),
        bars_per_chord=2,
        drum_probability=0.85,
        drum_kits=(KIT_BRUSH, KIT_JAZZ),
        drum_patterns=(
            {KICK: "X..xX..xX..xX..x", SIDE_STICK: "x..x..x...x..x..", CLOSED_HAT: "o.o.o.o.o.o.o.o."},
            {KICK: "X..xX..xX..xX..x", SIDE_STICK: "x..x..x...x..x..", MARACAS: "xoxoxoxoxoxoxoxo"},
        ),
        crash_and_fills=False,
        bass_patterns=("R-----F-R-----F-", "R-----F-F-----R-"),
        bass_programs=(32, 33),
        bass_low=33,
        comp_patterns=("x..x..x...x..x..", "x.x..x.x.x..x.x."),
        comp_programs=(24, 0),
        comp_voicing="close",
        pad_programs=(),
        leads=("flute", "saxophone", "piano", "vibraphone", "acoustic guitar", "clarinet"),
        moods=("relaxed", "calm", "dreamy", "happy", "melancholic"),
        melody_density=1.0,
        melody_subdivision=2,
        melody_scale="key",
        reverb=35,
    )
)

_add(
    Style(
        name="folk",
        tempo_range=(85, 130),
        steps_per_beat=4,
        swing=0.0,
        major_progressions=("I IV I V", "I V IV I", "I vi IV V", "I IV vi V"),
        minor_progressions=("i bVII bVI bVII", "i iv v i", "i bIII bVII i", "i bVII i v"),
        bars_per_chord=1,
        drum_probability=0.5,
        drum_kits=(KIT_ROOM, KIT_STANDARD),
        drum_patterns=(
            {KICK: "X.......X.......", SNARE: "....x.......x...", TAMBOURINE: "x.x.x.x.x.x.x.x."},
            {KICK: "X.....x.X.......", SIDE_STICK: "....x.......x...", MARACAS: "xoxoxoxoxoxoxoxo"},
        ),
        crash_and_fills=True,
        bass_patterns=("R-------F-------", "R---F---R---F---"),
        bass_programs=(32,),
        bass_low=33,
        comp_patterns=("x.x.x.x.x.x.x.x.", "x--xx-x-x--xx-x-", "1.5.8.5.3.5.8.5."),
        comp_programs=(25, 24, 46),
        comp_voicing="close",
        pad_programs=(),
        leads=("acoustic guitar", "violin", "flute", "harmonica", "piano", "clarinet"),
        moods=("calm", "happy", "melancholic", "uplifting", "relaxed"),
        melody_density=1.2,
        melody_subdivision=2,
        melody_scale="key",
        reverb=35,
    )
)

_add(
    Style(
        name="classical",
        tempo_range=(60, 140),
        steps_per_beat=4,
        swing=0.0,
        major_progressions=("I IV V7 I", "I vi ii V7", "I V vi iii IV I IV V", "I ii V7 I"),
        minor_progressions=("i iv V7 i", "i bVI iv V", "i iv bVII bIII", "i iihd7 V7 i"),
        bars_per_chord=1,
        drum_probability=0.0,
        drum_kits=(KIT_STANDARD,),
        drum_patterns=({},),
        crash_and_fills=False,
        bass_patterns=("R---------------", "R-------F-------", "R---R---F---F---"),
        bass_programs=(43, 42),
        bass_low=33,
        comp_patterns=("1.5.3.5.1.5.3.5.", "x---------------", "1.3.5.8.5.3.5.8.", "x---x---x---x---"),
        comp_programs=(48, 0, 46),
        comp_voicing="close",
        pad_programs=(49,),
        leads=("piano", "violin", "cello", "flute", "clarinet", "strings"),
        moods=("calm", "melancholic", "happy", "dreamy", "dark", "uplifting", "energetic"),
        melody_density=1.4,
        melody_subdivision=4,
        melody_scale="key",
        reverb=55,
    )
)

_add(
    Style(
        name="ambient",
        tempo_range=(55, 85),
        steps_per_beat=4,
        swing=0.0,
        major_progressions=("Imaj7 IVmaj7", "I iii IV I", "Imaj7 vi7 IVmaj7 Imaj7"),
        minor_progressions=("i7 bVImaj7", "i bVI bIII bVII", "i7 iv7 i7 bVII"),
        bars_per_chord=2,
        drum_probability=0.25,
        drum_kits=(KIT_ROOM, KIT_ELECTRONIC),
        drum_patterns=(
            {KICK: "X.......X.......", MARACAS: "..x...x...x...x.", SNARE: "........x......."},
            {KICK: "X.......X.......", CLOSED_HAT: "x.o.x.o.x.o.x.o.", RIDE: "x.......x......."},
        ),
        crash_and_fills=False,
        bass_patterns=("R-------------------------------", "R---------------"),
        bass_programs=(38, 89),
        bass_low=33,
        comp_patterns=("x-------------------------------", "x---------------"),
        comp_programs=(88, 89, 94, 49),
        comp_voicing="close",
        pad_programs=(91, 92),
        leads=("strings", "piano", "flute", "vibraphone", "electric piano", "synth lead"),
        moods=("calm", "dreamy", "dark", "melancholic"),
        melody_density=0.45,
        melody_subdivision=1,
        melody_scale="key",
        reverb=100,
    )
)


def get_style(name: str) -> Style:
    """The Style called ``name`` (one of attributes.STYLES)."""
    return STYLE_TABLE[name]


def _check_table() -> None:
    """Fail at import if a style is inconsistent (pattern lengths, vocabularies, progressions)."""
    assert tuple(STYLE_TABLE) == STYLES, "STYLE_TABLE and attributes.STYLES disagree"
    for style in STYLE_TABLE.values():
        bar = style.steps_per_bar
        patterns = [*style.bass_patterns, *style.comp_patterns]
        patterns += [p for kit in style.drum_patterns for p in kit.values()]
        for pattern in patterns:
            assert len(pattern) % bar == 0, f"{style.name}: pattern {pattern!r} is not whole bars"
        assert set(style.leads) <= set(LEAD_INSTRUMENTS), style.name
        assert set(style.moods) <= set(MOODS), style.name
        assert style.major_progressions or style.minor_progressions, style.name
        for progression in (*style.major_progressions, *style.minor_progressions):
            # Open on the tonic chord, so a few seconds of audio establish the labelled key.
            assert re.match(r"^[Ii](?![IViv])", progression), f"{style.name}: {progression}"
            for symbol in progression.split():
                parse_chord(symbol, 0)  # raises on a typo
        for progression in style.minor_progressions:
            # Degrees count from the major scale: minor's third, sixth and seventh need a flat.
            for symbol in progression.split():
                degree = _CHORD_RE.match(symbol)
                assert degree[1] or degree[2].lower() not in ("iii", "vi", "vii"), f"{style.name}: {symbol}"
        assert style.melody_scale in ("key", "pentatonic", "blues"), style.name
        assert style.comp_voicing in ("close", "power"), style.name


_check_table()
