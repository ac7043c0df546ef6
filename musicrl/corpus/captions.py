"""Captions for corpus clips in varied natural phrasing, and the parser that reads them back.

``make_caption(attrs, rng)`` writes one caption from a clip's attributes: one of six forms (a
noun phrase, a bare capitalised phrase, a tag list, two or three sentences, a request, a
lead-first phrase), synonyms for every value, modifiers in shuffled order, and only some of the
attributes (each is mentioned with its own probability). It returns the caption and the list of
attribute names it mentions; the manifest keeps every attribute regardless.

``parse_caption(text)`` recovers the attribute values a caption states, from the same synonym
tables and those of the free phrasing (``phrases.py``: more synonyms, scenes that imply attributes,
tempos written as words). Tests use it to prove captions state only true values; evaluation can use
it to know which attributes a free-text prompt asks for. The free caption generator is
``phrasing.py``.
"""

from __future__ import annotations

import re
from collections.abc import Collection

import numpy as np

from musicrl.corpus.attributes import KEYS
from musicrl.corpus.phrases import (
    FREE_DRUMS_OFF,
    FREE_ENERGY_WORDS,
    FREE_LEAD_WORDS,
    FREE_MOOD_WORDS,
    FREE_STYLE_WORDS,
    FREE_TEMPO_BAND_WORDS,
    NUMBER_TOKENS,
    SCENES,
    read_number_words,
)

STYLE_WORDS: dict[str, tuple[str, ...]] = {
    "techno": ("techno",),
    "house": ("house",),
    "rock": ("rock",),
    "metal": ("metal", "heavy metal"),
    "pop": ("pop",),
    "jazz": ("jazz", "jazzy"),
    "blues": ("blues", "bluesy"),
    "funk": ("funk", "funky"),
    "hip-hop": ("hip-hop", "hip hop"),
    "reggae": ("reggae",),
    "bossa nova": ("bossa nova", "bossa"),
    "folk": ("folk",),
    "classical": ("classical",),
    "ambient": ("ambient",),
}
MOOD_WORDS: dict[str, tuple[str, ...]] = {
    "calm": ("calm", "peaceful", "serene", "tranquil"),
    "dreamy": ("dreamy", "ethereal", "hazy"),
    "melancholic": ("melancholic", "sad", "wistful", "melancholy"),
    "relaxed": ("relaxed", "laid-back", "chilled", "easygoing"),
    "happy": ("happy", "cheerful", "joyful", "sunny"),
    "dark": ("dark", "brooding", "ominous", "sinister"),
    "energetic": ("energetic", "driving", "lively", "punchy"),
    "uplifting": ("uplifting", "hopeful", "euphoric", "triumphant"),
    "aggressive": ("aggressive", "fierce", "intense", "furious"),
}
ENERGY_WORDS: dict[str, tuple[str, ...]] = {
    "low": ("low-energy", "gentle", "soft"),
    "medium": ("medium-energy", "mid-energy", "moderate-energy"),
    "high": ("high-energy", "powerful"),
}
TEMPO_BAND_WORDS: dict[str, tuple[str, ...]] = {
    "slow": ("slow", "slow-tempo", "unhurried"),
    "medium": ("mid-tempo", "medium-tempo", "moderate-tempo"),
    "fast": ("fast", "up-tempo", "fast-paced", "quick"),
}
LEAD_WORDS: dict[str, tuple[str, ...]] = {
    "piano": ("piano", "grand piano"),
    "electric piano": ("electric piano", "e-piano"),
    "vibraphone": ("vibraphone", "vibes"),
    "organ": ("organ",),
    "harmonica": ("harmonica",),
    "acoustic guitar": ("acoustic guitar",),
    "electric guitar": ("electric guitar", "clean electric guitar"),
    "distorted guitar": ("distorted guitar", "overdriven guitar"),
    "violin": ("violin", "fiddle"),
    "cello": ("cello",),
    "strings": ("strings", "string section", "string ensemble"),
    "trumpet": ("trumpet",),
    "saxophone": ("saxophone", "sax"),
    "clarinet": ("clarinet",),
    "flute": ("flute",),
    "synth lead": ("synth lead", "lead synth", "synthesizer lead"),
}
DRUMS_ON = ("with drums", "with a drum kit", "with percussion", "over a drum groove")
DRUMS_OFF = ("no drums", "without drums", "drumless", "without percussion", "with no percussion")
NOUNS = ("track", "piece", "tune", "instrumental", "composition", "number")
GROOVE_NOUNS = ("groove", "beat", "jam")  # imply a rhythm section: only used with drums
VERBS = ("Compose", "Generate", "Create", "Make", "Write", "Play")
_SPELLED = {"#": "sharp", "b": "flat"}

# Probability that a caption mentions each attribute.
MENTION_PROBABILITY = {
    "style": 0.95,
    "mood": 0.7,
    "energy": 0.25,
    "tempo": 0.65,
    "key": 0.5,
    "lead_instrument": 0.75,
    "drums": 0.5,
}


def _pick(rng: np.random.Generator, options: tuple[str, ...] | list[str]) -> str:
    return str(options[int(rng.integers(len(options)))])


def _article(phrase: str) -> str:
    lowered = phrase.lower()
    if lowered.startswith(("eu", "uni", "one")):  # "a euphoric", "a unison"
        return "a"
    return "an" if lowered[:1] in "aeiou" else "a"


def _key_words(key: str, mode: str, rng: np.random.Generator) -> str:
    if len(key) == 2 and rng.random() < 0.4:
        return f"{key[0]}-{_SPELLED[key[1]]} {mode}"
    return f"{key} {mode}"


def _lead_phrase(word: str, plural: bool, rng: np.random.Generator) -> str:
    """A post-modifier naming the lead instrument."""
    forms = [
        f"featuring {word}" if plural else f"featuring {_article(word)} {word}",
        f"led by {word}" if plural else f"led by {_article(word)} {word}",
        f"with the melody on {word}" if plural else f"with the melody on {_article(word)} {word}",
        f"with {word} on the melody" if plural else f"with {_article(word)} {word} melody",
    ]
    if not word.endswith(("lead", "synth")) and not plural:
        forms.append(f"with {_article(word)} {word} lead")
    return _pick(rng, forms)


def make_caption(
    attrs: dict, rng: np.random.Generator, mentioned: Collection[str] | None = None
) -> tuple[str, list[str]]:
    """One caption for a clip with attributes ``attrs`` -> (caption, mentioned attribute names).

    ``attrs`` needs style, tempo, key, mode, lead_instrument, drums, mood and energy. Mentioned
    names come from: style, mood, energy, tempo, tempo_band, key, mode, lead_instrument, drums.
    ``mentioned`` fixes which of them the caption states (say, those of a free caption, so that the
    two say the same thing) instead of drawing them; the draws are made either way, so a corpus
    caption does not change.
    """
    mention = {name: bool(rng.random() < p) for name, p in MENTION_PROBABILITY.items()}
    if not any(mention.values()):
        mention["style"] = True
    tempo_as_number = bool(rng.random() < 0.6)
    full_key = bool(rng.random() < 0.65)
    band_word = mention["tempo"] and not tempo_as_number  # a tempo as a number, a word of its band, or (chosen) both
    if mentioned is not None:
        said = set(mentioned)
        unknown = said - set(MENTION_PROBABILITY) - {"tempo_band", "mode"}
        if not said or unknown:
            raise ValueError(f"mentioned must name some of {', '.join(MENTION_PROBABILITY)}, got {sorted(said)}")
        mention = {name: name in said for name in MENTION_PROBABILITY}
        mention["tempo"] = bool(said & {"tempo", "tempo_band"})
        mention["key"] = bool(said & {"key", "mode"})
        # (a flag of an unstated attribute keeps its draw: later draws depend on it)
        tempo_as_number = "tempo" in said if mention["tempo"] else tempo_as_number
        full_key = "key" in said if mention["key"] else full_key
        band_word = "tempo_band" in said
    plural = attrs["lead_instrument"] == "strings"

    style = _pick(rng, STYLE_WORDS[attrs["style"]])
    mood = _pick(rng, MOOD_WORDS[attrs["mood"]])
    energy = _pick(rng, ENERGY_WORDS[attrs["energy"]])
    band = _pick(rng, TEMPO_BAND_WORDS[attrs["tempo_band"]])
    bpm = attrs["tempo"]
    tempo_post = _pick(
        rng, (f"at {bpm} bpm", f"at {bpm} BPM", f"around {bpm} beats per minute", f"at a tempo of {bpm} BPM")
    )
    key_post = (
        f"in {_pick(rng, ('', 'the key of '))}{_key_words(attrs['key'], attrs['mode'], rng)}"
        if full_key
        else _pick(rng, (f"in a {attrs['mode']} key", f"in {attrs['mode']}"))
    )
    lead = _pick(rng, LEAD_WORDS[attrs["lead_instrument"]])
    drums_post = _pick(rng, DRUMS_ON if attrs["drums"] else DRUMS_OFF)
    nouns = NOUNS + (GROOVE_NOUNS if attrs["drums"] else ())
    noun = _pick(rng, nouns)

    mentioned: list[str] = []
    adjectives: list[str] = []
    if mention["mood"]:
        adjectives.append(mood)
        mentioned.append("mood")
    if mention["energy"]:
        adjectives.append(energy)
        mentioned.append("energy")
    if band_word:
        adjectives.append(band)
        mentioned.append("tempo_band")
    order = rng.permutation(len(adjectives))
    adjectives = [adjectives[i] for i in order]
    head = " ".join(adjectives + ([style] if mention["style"] else []) + [noun])
    if mention["style"]:
        mentioned.append("style")

    posts: list[str] = []
    if mention["tempo"] and tempo_as_number:
        posts.append(tempo_post)
        mentioned.append("tempo")
    if mention["key"]:
        posts.append(key_post)
        mentioned += ["key", "mode"] if full_key else ["mode"]
    lead_in_post = mention["lead_instrument"]
    if mention["drums"]:
        mentioned.append("drums")
    if lead_in_post:
        mentioned.append("lead_instrument")

    form = int(rng.integers(6))
    if form == 2:  # tag list
        tags = ([style] if mention["style"] else []) + adjectives
        tags += [f"{bpm} bpm"] if mention["tempo"] and tempo_as_number else []
        if mention["key"]:
            tags.append(_key_words(attrs["key"], attrs["mode"], rng) if full_key else f"{attrs['mode']} key")
        tags += [lead] if lead_in_post else []
        tags += (
            [_pick(rng, ("drums", "percussion") if attrs["drums"] else ("no drums", "drumless"))]
            if mention["drums"]
            else []
        )
        tags = [tags[i] for i in rng.permutation(len(tags))]
        return ", ".join(tags), sorted(mentioned)
    if form == 3:  # sentences
        first = f"{_article(head).capitalize()} {head}"
        first += (" " + " ".join(posts[i] for i in rng.permutation(len(posts)))) if posts else ""
        sentences = [first + "."]
        if lead_in_post:
            the = "" if plural else "the "
            lead_sentence = _pick(
                rng,
                (
                    f"{the}{lead} {'carry' if plural else 'carries'} the melody",
                    f"the melody is played on {'' if plural else _article(lead) + ' '}{lead}",
                    f"{the}{lead} {'take' if plural else 'takes'} the lead",
                ),
            )
            sentences.append(lead_sentence[0].upper() + lead_sentence[1:] + ".")
        if mention["drums"]:
            sentences.append(
                _pick(
                    rng,
                    ("Drums keep the beat.", "Percussion keeps time.")
                    if attrs["drums"]
                    else ("There are no drums.", "It has no percussion."),
                )
            )
        return " ".join(sentences), sorted(mentioned)

    if lead_in_post and form != 5:
        posts.append(_lead_phrase(lead, plural, rng))
    if mention["drums"]:
        posts.append(drums_post)
    posts = [posts[i] for i in rng.permutation(len(posts))]
    tail = ""
    if posts:
        joiners = [", " if rng.random() < 0.5 else " " for _ in posts]
        tail = "".join(j + p for j, p in zip(joiners, posts, strict=True))
        if len(posts) > 1 and rng.random() < 0.5:  # "..., X and Y"
            tail = "".join(j + p for j, p in zip(joiners[:-1], posts[:-1], strict=True)) + " and " + posts[-1]
    if form == 0:
        return f"{_article(head)} {head}{tail}", sorted(mentioned)
    if form == 1:
        return f"{head[0].upper()}{head[1:]}{tail}", sorted(mentioned)
    if form == 4:
        return f"{_pick(rng, VERBS)} {_article(head)} {head}{tail}", sorted(mentioned)
    # form 5: lead first
    backing = _pick(rng, ("backing", "groove") if attrs["drums"] else ("backing", "accompaniment"))
    body = " ".join(adjectives + ([style] if mention["style"] else []) + [backing])
    if lead_in_post:
        text = f"{lead[0].upper()}{lead[1:]} {_pick(rng, ('over', 'on top of'))} {_article(body)} {body}{tail}"
    else:
        text = f"{_article(body).capitalize()} {body}{tail}"
    return text, sorted(mentioned)


# ----------------------------------------------------------------------------------------------
# Parsing


def _alternation(table: dict[str, tuple[str, ...]]) -> list[tuple[str, str]]:
    """(surface word, value) pairs, longest word first so 'electric piano' beats 'piano'."""
    pairs = [(word, value) for value, words in table.items() for word in words]
    return sorted(pairs, key=lambda p: -len(p[0]))


def _find(text: str, table: dict[str, tuple[str, ...]]) -> tuple[str | None, str]:
    """First value whose word occurs (case-insensitive, whole words); the text with it blanked."""
    for word, value in _alternation(table):
        match = re.search(rf"(?<![\w-]){re.escape(word)}(?![\w-])", text, flags=re.IGNORECASE)
        if match:
            return value, text[: match.start()] + " " * len(word) + text[match.end() :]
    return None, text


def _merged(template: dict[str, tuple[str, ...]], free: dict[str, tuple[str, ...]]) -> dict[str, tuple[str, ...]]:
    return {value: tuple(dict.fromkeys(template[value] + free.get(value, ()))) for value in template}


# What the parser reads: the template words and the free phrasing's, per attribute, in parse order.
PARSE_TABLES: tuple[tuple[str, dict[str, tuple[str, ...]]], ...] = (
    ("lead_instrument", _merged(LEAD_WORDS, FREE_LEAD_WORDS)),
    ("style", _merged(STYLE_WORDS, FREE_STYLE_WORDS)),
    ("mood", _merged(MOOD_WORDS, FREE_MOOD_WORDS)),
    ("energy", _merged(ENERGY_WORDS, FREE_ENERGY_WORDS)),
    ("tempo_band", _merged(TEMPO_BAND_WORDS, FREE_TEMPO_BAND_WORDS)),
)
SCENE_IMPLIES: dict[str, dict] = {
    phrase: {"style": style, **implied} for style, scenes in SCENES.items() for phrase, implied in scenes
}
DRUMS_OFF_PHRASES = tuple(
    dict.fromkeys(("no drums", "without drums", "drumless", "no percussion", "without percussion", *FREE_DRUMS_OFF))
)

_KEY_RE = re.compile(r"\b([A-G])(?:(#|b)|[- ](sharp|flat))?\s+(major|minor)\b")
_TEMPO_RE = re.compile(r"\b(\d{2,3})\s*-?\s*(?:bpm|beats (?:per|a) minute)\b", re.IGNORECASE)
_TEMPO_WORDS_RE = re.compile(
    rf"\b((?:(?:{'|'.join(NUMBER_TOKENS)})[\s-]+)+)(?:bpm|beats (?:per|a) minute)\b", re.IGNORECASE
)
_MODE_RE = re.compile(r"\b(major|minor)\b", re.IGNORECASE)
_DRUMS_ON_RE = re.compile(
    r"\b(drums?|drum kit|drum groove|drum machine|drummer|percussion|backbeat|breakbeat|beat-driven)\b"
)


def _blank(text: str, start: int, end: int) -> str:
    return text[:start] + " " * (end - start) + text[end:]


def _read_tempo(text: str) -> tuple[int | None, str]:
    """A tempo in BPM written as digits ("138 bpm", "~120bpm") or words ("a hundred and forty
    beats per minute"); the text with it blanked."""
    match = _TEMPO_RE.search(text)
    if match:
        return int(match.group(1)), _blank(text, match.start(), match.end())
    for match in _TEMPO_WORDS_RE.finditer(text):
        value = read_number_words(match.group(1))
        if value is not None and 20 <= value <= 299:
            return value, _blank(text, match.start(), match.end())
    return None, text


def parse_caption(text: str) -> dict:
    """Attribute values a caption states: any of style, mood, energy, tempo, tempo_band, key,
    mode, lead_instrument, drums (absent keys were not mentioned). A scene ("an after-hours
    warehouse rave") states the attributes it implies (phrases.SCENES)."""
    out: dict = {}
    rest = text
    key = _KEY_RE.search(rest)
    if key:
        letter, sign, spelled, mode = key.groups()
        accidental = sign or {"sharp": "#", "flat": "b", None: ""}[spelled]
        name = letter + accidental
        enharmonic = {"Db": "C#", "D#": "Eb", "Gb": "F#", "G#": "Ab", "A#": "Bb"}
        out["key"] = enharmonic.get(name, name)
        out["mode"] = mode
        rest = _blank(rest, key.start(), key.end())
        if out["key"] not in KEYS:
            raise ValueError(f"unknown key in caption: {name}")
    else:
        mode = _MODE_RE.search(rest)
        if mode:
            out["mode"] = mode.group(1).lower()
    tempo, rest = _read_tempo(rest)
    if tempo is not None:
        out["tempo"] = tempo
    for phrase, implied in sorted(SCENE_IMPLIES.items(), key=lambda p: -len(p[0])):
        at = rest.lower().find(phrase.lower())
        if at >= 0:
            out.update(implied)
            rest = _blank(rest, at, at + len(phrase))
    rest = re.sub(r"(?<=\w)-led\b", " led", rest)  # "piano-led": the instrument is a word of its own
    for name, table in PARSE_TABLES:
        value, rest = _find(rest, table)
        if value is not None:
            out[name] = value
    lowered = rest.lower()
    if any(p in lowered for p in DRUMS_OFF_PHRASES):
        out["drums"] = False
    elif _DRUMS_ON_RE.search(lowered):
        out["drums"] = True
    return out
