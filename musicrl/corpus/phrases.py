"""The free-phrasing vocabulary: what a visitor types besides the template captions' words.

Constant tables shared by the free caption generator (``phrasing.py``) and the caption parser
(``captions.parse_caption``), so that everything the generator writes the parser reads back:

- extra synonyms per attribute value (``FREE_*_WORDS``; the template tables stay as they were);
- scenes that imply attributes (``SCENES``: "an after-hours warehouse rave" -> techno, drums, high
  energy), each usable only for a clip whose labels agree with everything it implies;
- tempo as words: ``spell_number(138, form)`` -> "a hundred and thirty-eight" and its inverse
  ``read_number_words``.

A word here may not be a word of another attribute (the parser reads each phrase as one value);
``tests/test_captions_free.py`` checks that every generated caption parses back to its labels.
"""

from __future__ import annotations

FREE_STYLE_WORDS: dict[str, tuple[str, ...]] = {
    "techno": ("techno", "hard techno", "warehouse techno", "Detroit techno"),
    "house": ("house", "deep house", "house music", "disco house"),
    "rock": ("rock", "indie rock", "classic rock", "rock 'n' roll"),
    "metal": ("metal", "thrash metal", "heavy metal", "metalcore"),
    "pop": ("pop", "chart pop", "radio pop", "synthpop"),
    "jazz": ("jazz", "jazzy", "bebop", "swing jazz", "smooth jazz"),
    "blues": ("blues", "bluesy", "twelve-bar blues", "delta blues"),
    "funk": ("funk", "funky", "seventies funk", "disco funk"),
    "hip-hop": ("hip-hop", "hip hop", "hiphop", "boom-bap", "boom bap", "rap beat", "lo-fi hip hop"),
    "reggae": ("reggae", "roots reggae", "dub reggae", "rocksteady"),
    "bossa nova": ("bossa nova", "bossa", "bossa-nova", "brazilian bossa"),
    "folk": ("folk", "folksy", "acoustic folk", "americana"),
    "classical": ("classical", "orchestral", "baroque", "romantic-era classical", "chamber music"),
    "ambient": ("ambient", "ambient drone", "soundscape", "ambient soundscape", "new age"),
}
FREE_LEAD_WORDS: dict[str, tuple[str, ...]] = {
    "piano": ("piano", "solo piano", "acoustic piano", "grand piano", "upright piano"),
    "electric piano": ("electric piano", "e-piano", "rhodes", "Rhodes", "Rhodes piano", "wurlitzer"),
    "vibraphone": ("vibraphone", "vibes", "vibraphones"),
    "organ": ("organ", "hammond organ", "Hammond organ", "drawbar organ", "B3 organ"),
    "harmonica": ("harmonica", "blues harp", "mouth organ"),
    "acoustic guitar": ("acoustic guitar", "steel-string guitar", "strummed acoustic guitar"),
    "electric guitar": ("electric guitar", "clean electric guitar", "clean guitar", "hollow-body guitar"),
    "distorted guitar": ("distorted guitar", "overdriven guitar", "fuzz guitar", "distortion guitar",
                         "crunchy guitar", "shredding guitar"),
    "violin": ("violin", "fiddle", "solo violin"),
    "cello": ("cello", "solo cello", "violoncello"),
    "strings": ("strings", "string section", "string ensemble", "lush strings", "string orchestra"),
    "trumpet": ("trumpet", "solo trumpet", "trumpets"),
    "saxophone": ("saxophone", "sax", "alto sax", "alto saxophone"),
    "clarinet": ("clarinet", "solo clarinet"),
    "flute": ("flute", "solo flute", "breathy flute"),
    "synth lead": ("synth lead", "lead synth", "synthesizer lead", "synth", "synths", "synthesizer",
                   "sawtooth lead", "saw lead"),
}
FREE_MOOD_WORDS: dict[str, tuple[str, ...]] = {
    "calm": ("soothing", "tranquil", "peaceful"),
    "dreamy": ("dreamlike", "floaty", "spacey"),
    "melancholic": ("bittersweet", "mournful", "heartbroken"),
    "relaxed": ("mellow", "chill", "chilled-out"),
    "happy": ("feel-good", "playful", "carefree"),
    "dark": ("moody", "menacing", "gloomy"),
    "energetic": ("energizing", "hyped", "bouncy"),
    "uplifting": ("anthemic", "inspiring", "soaring"),
    "aggressive": ("angry", "brutal", "ferocious"),
}
FREE_ENERGY_WORDS: dict[str, tuple[str, ...]] = {
    "low": ("quiet", "subdued", "delicate", "low energy"),
    "medium": ("medium energy", "mid energy"),
    "high": ("high energy", "full-on", "explosive", "pumping"),
}
FREE_TEMPO_BAND_WORDS: dict[str, tuple[str, ...]] = {
    "slow": ("very slow", "slow-moving", "downtempo", "leisurely", "at a slow pace", "really slow"),
    "medium": ("midtempo", "mid tempo", "medium tempo", "moderate tempo", "at a walking pace", "moderately paced"),
    "fast": ("uptempo", "brisk", "rapid", "speedy", "fast-moving", "high-tempo", "at a fast clip", "really fast"),
}
FREE_DRUMS_ON: tuple[str, ...] = (
    "with a tight drum kit", "beat-driven", "with live drums", "over a drum machine", "drum-heavy",
    "with a steady backbeat", "with a drummer", "with a breakbeat", "full drum kit", "drums in",
    "heavy on the drums", "drums: yes",
)
FREE_DRUMS_OFF: tuple[str, ...] = (
    "no percussion", "drumless", "no drums at all", "without any drums", "beatless", "percussion-free",
    "drum-free", "no drums please", "drums: none", "drums: no",
)
# Mode without a tonic. "dark"/"sad" would be moods, so none of these is a mood word.
FREE_MODE_WORDS: dict[str, tuple[str, ...]] = {
    "major": ("major-key", "in a major key", "bright major key", "in major", "major tonality", "major key"),
    "minor": ("minor-key", "in a minor key", "in minor", "minor tonality", "minor key", "in a minor mode"),
}
FREE_NOUNS = ("track", "tune", "piece", "song", "instrumental", "cue", "loop", "number", "thing", "bit")
DRUM_NOUNS = ("groove", "beat", "jam")  # imply a rhythm section: only used with drums
OPENERS = (
    "i need", "give me", "can you make", "could you make me", "looking for", "make me", "i want",
    "something like", "need", "gimme", "please generate", "how about", "i'd love", "play me",
)
CLOSERS = ("please", "thanks", "for my video", "for a short film", "for a game menu", "for a podcast intro",
           "if possible", "ty")

# Scenes: (phrase, attributes it implies besides the style). Worded apart from the hand-written
# paraphrase test set (musicrl/corpus/paraphrase.py): the tests check none is lifted from it.
SCENES: dict[str, tuple[tuple[str, dict], ...]] = {
    "techno": (
        ("an after-hours warehouse rave", {"drums": True, "energy": "high"}),
        ("a concrete bunker club at dawn", {"drums": True}),
        ("a strobe-lit underground party", {"drums": True}),
    ),
    "house": (
        ("a rooftop party at sunset", {"drums": True}),
        ("a Chicago club night", {"drums": True}),
        ("a beach-bar dancefloor at golden hour", {"drums": True}),
    ),
    "rock": (
        ("a sweaty bar gig by a garage band", {"drums": True}),
        ("a stadium encore", {"drums": True, "energy": "high"}),
        ("a college-radio anthem", {"drums": True}),
    ),
    "metal": (
        ("a festival mosh pit", {"drums": True, "energy": "high"}),
        ("a headbanging crowd in a packed venue", {"drums": True, "energy": "high"}),
    ),
    "pop": (
        ("a summer radio hit", {}),
        ("a catchy chart single", {}),
        ("a singalong for the car", {}),
    ),
    "jazz": (
        ("a smoky late-night club in New York", {}),
        ("a cocktail lounge at midnight", {}),
        ("a hotel bar after closing time", {}),
    ),
    "blues": (
        ("a Mississippi juke joint", {}),
        ("a rainy night in a roadhouse bar", {}),
    ),
    "funk": (
        ("a seventies block party", {"drums": True}),
        ("a roller disco in platform shoes", {"drums": True}),
    ),
    "hip-hop": (
        ("a late-night cypher on a street corner", {"drums": True}),
        ("a lo-fi study session", {"drums": True}),
        ("a head-nodding car ride through the city", {"drums": True}),
    ),
    "reggae": (
        ("a Kingston yard party", {"drums": True}),
        ("a beach shack in Jamaica", {"drums": True}),
    ),
    "bossa nova": (
        ("a seaside café in Rio", {}),
        ("an Ipanema beach bar", {}),
    ),
    "folk": (
        ("a campfire singalong under the stars", {}),
        ("a cabin in the woods", {}),
        ("a village fair", {}),
    ),
    "classical": (
        ("a candlelit concert hall", {"drums": False}),
        ("a chamber recital in a palace", {"drums": False}),
    ),
    "ambient": (
        ("a foggy morning by a lake", {}),
        ("drifting through space in a silent spaceship", {}),
        ("a planetarium show", {}),
    ),
}

# ----------------------------------------------------------------------------------------------
# Numbers as words (hand-written: 40 lines cover 20-299, what a tempo needs; no library for it)

UNITS: tuple[str, ...] = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
                          "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen",
                          "eighteen", "nineteen")
TENS: dict[str, int] = {"twenty": 20, "thirty": 30, "forty": 40, "fifty": 50, "sixty": 60, "seventy": 70,
                        "eighty": 80, "ninety": 90}
NUMBER_TOKENS: tuple[str, ...] = (*UNITS, *TENS, "hundred", "and", "a")
NUMBER_FORMS: tuple[str, ...] = ("a hundred and", "one hundred and", "one hundred", "one-forty")


def _below_100(n: int, hyphen: bool) -> str:
    if n < 20:
        return UNITS[n]
    tens = next(word for word, value in TENS.items() if value == n - n % 10)
    return tens if n % 10 == 0 else f"{tens}{'-' if hyphen else ' '}{UNITS[n % 10]}"


def spell_number(n: int, form: str = "a hundred and", hyphen: bool = True) -> str:
    """``n`` in 20..299 as words. ``form`` picks how hundreds read (one of NUMBER_FORMS):
    138 -> "a hundred and thirty-eight" / "one hundred and thirty-eight" / "one hundred thirty-eight"
    / "one thirty-eight" ("one-forty" form; it falls back to "one hundred and" below x10)."""
    if not 20 <= n <= 299:
        raise ValueError(f"spell_number covers 20..299, got {n}")
    if n < 100:
        return _below_100(n, hyphen)
    hundreds, rest = divmod(n, 100)
    head = "a hundred" if form == "a hundred and" and hundreds == 1 else f"{UNITS[hundreds]} hundred"
    if rest == 0:
        return head
    if form == "one-forty" and rest >= 10:
        return f"{UNITS[hundreds]} {_below_100(rest, hyphen)}"
    joiner = " " if form == "one hundred" else " and "
    return f"{head}{joiner}{_below_100(rest, hyphen)}"


def _read_below_100(tokens: list[str]) -> int | None:
    if len(tokens) == 1 and tokens[0] in UNITS:
        return UNITS.index(tokens[0])
    if tokens and tokens[0] in TENS:
        if len(tokens) == 1:
            return TENS[tokens[0]]
        if len(tokens) == 2 and tokens[1] in UNITS[1:10]:
            return TENS[tokens[0]] + UNITS.index(tokens[1])
    return None


def read_number_words(phrase: str) -> int | None:
    """Inverse of ``spell_number``: "a hundred and forty" -> 140, "one forty" -> 140, "ninety two"
    -> 92; None when the words are not one number."""
    tokens = phrase.lower().replace("-", " ").split()
    while tokens and tokens[0] in ("and", "a") and tokens[1:2] != ["hundred"]:
        tokens = tokens[1:]  # "... and a hundred": the leading words belong to the sentence
    if "hundred" in tokens:
        i = tokens.index("hundred")
        head = tokens[:i]
        if head not in (["a"], ["one"], ["two"]):
            return None
        base = 100 * (1 if head == ["a"] else UNITS.index(head[0]))
        rest = tokens[i + 1 :]
        if rest[:1] == ["and"]:
            rest = rest[1:]
        if not rest:
            return base
        below = _read_below_100(rest)
        return None if below is None or below == 0 else base + below
    if len(tokens) >= 2 and tokens[0] in ("one", "two"):  # "one forty", "one twenty-eight"
        below = _read_below_100(tokens[1:])
        return None if below is None or below < 10 else 100 * UNITS.index(tokens[0]) + below
    return _read_below_100(tokens)
