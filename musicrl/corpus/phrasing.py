"""Free-phrasing captions: what a visitor types, not what a template writes.

``free_caption(attrs, rng)`` writes one caption from a clip's labels in one of five shapes,
with any subset of the attributes, in shuffled order::

    head + fragments   "an after-hours warehouse rave, ~138bpm, minor-key, lead synth"
    tags               "bossa / 132 BPM / flute / drumless"
    key: value         "style: folk, tempo: ninety-six beats per minute, lead: fiddle"
    sentences          "A mellow jazzy tune. Keep it at a walking pace. No drums at all."
    request            "gimme a gentle lullaby-ish piece on solo piano in E-flat major please"

Tempo is written as digits ("138 bpm", "at 92 BPM", "~120bpm"), as words ("around a hundred and
thirty-eight beats per minute") or as a word of its band ("downtempo", "brisk"); the key as a tonic
("in F sharp minor") or a mode alone ("minor-key", "bright major key"); drums, lead instrument,
style, mood and energy from the synonym tables of ``captions.py`` and ``phrases.py``; a style may
come as a scene that implies it and more (``phrases.SCENES``). Then the case may change (all lower,
sentence case, rarely all caps; a key's tonic keeps its case) and a few typos land (a swapped,
dropped or doubled letter). Numbers never get typos, and neither does any word that carries an
attribute: each change is kept only if ``parse_caption`` still reads exactly the stated labels, so
the manifest's ``mentioned`` list and the parser agree for every caption, as for the templates.

``corpus_caption(attrs, mode, seed_parts)`` is what the corpus builder calls: templates only, free
only, or the mix (``FREE_SHARE_IN_MIX`` free, the rest the template caption that a templates build
gives the same clip).
"""

from __future__ import annotations

import re

import numpy as np

from musicrl.corpus.captions import (
    DRUMS_OFF,
    DRUMS_ON,
    ENERGY_WORDS,
    LEAD_WORDS,
    MOOD_WORDS,
    STYLE_WORDS,
    TEMPO_BAND_WORDS,
    _article,
    _pick,
    make_caption,
    parse_caption,
)
from musicrl.corpus.phrases import (
    CLOSERS,
    DRUM_NOUNS,
    FREE_DRUMS_OFF,
    FREE_DRUMS_ON,
    FREE_ENERGY_WORDS,
    FREE_LEAD_WORDS,
    FREE_MODE_WORDS,
    FREE_MOOD_WORDS,
    FREE_NOUNS,
    FREE_STYLE_WORDS,
    FREE_TEMPO_BAND_WORDS,
    NUMBER_FORMS,
    OPENERS,
    SCENES,
    spell_number,
)

CAPTION_MODES: tuple[str, ...] = ("templates", "free", "mix")
FREE_SHARE_IN_MIX = 0.7
FREE_MENTION_PROBABILITY = {
    "style": 0.85,
    "mood": 0.45,
    "energy": 0.25,
    "tempo": 0.6,
    "key": 0.5,
    "lead_instrument": 0.7,
    "drums": 0.55,
}
SCENE_PROBABILITY = 0.3  # of naming the style by a scene, when one fits the clip
TYPO_PROBABILITY = 0.25  # of a caption with typos (one, a fifth of the time two)
SHAPES: tuple[str, ...] = ("fragments", "tags", "key_value", "sentences", "request")
SHAPE_WEIGHTS = (0.35, 0.2, 0.08, 0.15, 0.22)
_SPELLED_ACCIDENTAL = {"#": ("#", " sharp", "-sharp"), "b": ("b", " flat", "-flat")}


def _words(template: dict[str, tuple[str, ...]], free: dict[str, tuple[str, ...]], value: str) -> tuple[str, ...]:
    return tuple(dict.fromkeys(template[value] + free.get(value, ())))


def tempo_phrase(bpm: int, rng: np.random.Generator) -> str:
    """An exact tempo as digits or words: "138 bpm", "~138bpm", "roughly a hundred and thirty-eight
    beats per minute"."""
    if rng.random() < 0.65:
        return _pick(rng, (f"{bpm} bpm", f"{bpm} BPM", f"{bpm}bpm", f"~{bpm}bpm", f"~{bpm} bpm", f"at {bpm} BPM",
                           f"around {bpm} bpm", f"roughly {bpm} beats per minute", f"about {bpm} bpm",
                           f"{bpm} beats per minute", f"tempo {bpm} bpm", f"at {bpm} bpm"))
    words = spell_number(bpm, _pick(rng, NUMBER_FORMS), hyphen=bool(rng.random() < 0.7))
    hedge = _pick(rng, ("", "around ", "roughly ", "about ", "at ", "somewhere around "))
    return f"{hedge}{words} {_pick(rng, ('beats per minute', 'bpm', 'BPM', 'beats a minute'))}"


def key_phrase(key: str, mode: str, with_tonic: bool, rng: np.random.Generator) -> str:
    """ "F sharp minor", "Bb major", "D major"; or the mode alone: "minor-key", "in a major key"."""
    if not with_tonic:
        return _pick(rng, FREE_MODE_WORDS[mode] + (f"in a {mode} key", f"in {mode}"))
    tonic = key[0] + (_pick(rng, _SPELLED_ACCIDENTAL[key[1]]) if len(key) == 2 else "")
    return f"{tonic} {mode}"


def lead_phrase(word: str, rng: np.random.Generator, attach: bool) -> str:
    """The lead instrument as a fragment ("piano-led", "with a sax lead", "violin up front") or,
    when ``attach``, as a post-modifier of the head ("on solo piano", "featuring a flute")."""
    plural = word.endswith("s")
    article = "" if plural else _article(word) + " "
    if attach:
        return _pick(rng, (f"on {word}", f"featuring {article}{word}", f"with {article}{word} melody",
                           f"led by {article}{word}", f"for {word}"))
    forms = [word, f"{word} on top", f"{word} up front", f"{word} melody", f"{word} carrying the melody",
             f"melody on {word}"]
    if " " not in word and not word.endswith("s"):
        forms.append(f"{word}-led")
    if not plural and not word.endswith(("lead", "synth")):
        forms.append(f"with {article}{word} lead")
    return _pick(rng, forms)


def _scene(attrs: dict, rng: np.random.Generator) -> tuple[str, dict] | None:
    fitting = [s for s in SCENES[attrs["style"]] if all(attrs[k] == v for k, v in s[1].items())]
    if not fitting or rng.random() >= SCENE_PROBABILITY:
        return None
    return fitting[int(rng.integers(len(fitting)))]


def free_caption(attrs: dict, rng: np.random.Generator) -> tuple[str, list[str]]:
    """One free-phrasing caption for a clip with labels ``attrs`` -> (caption, mentioned names).

    ``attrs`` as for ``captions.make_caption``; mentioned names are those the caption states or
    implies (a scene implies its style and maybe drums and energy), from: style, mood, energy,
    tempo, tempo_band, key, mode, lead_instrument, drums.
    """
    mention = {name: bool(rng.random() < p) for name, p in FREE_MENTION_PROBABILITY.items()}
    if not any(mention.values()):
        mention["style"] = True
    mentioned: set[str] = set()
    shape = SHAPES[int(rng.choice(len(SHAPES), p=SHAPE_WEIGHTS))]
    scene = _scene(attrs, rng) if mention["style"] and shape in ("fragments", "request") else None
    adjectives: list[str] = []  # may stand before the noun
    fragments: list[tuple[str, str]] = []  # (attribute, phrase), after the head or on their own
    kv: list[str] = []
    if mention["mood"]:
        word = _pick(rng, _words(MOOD_WORDS, FREE_MOOD_WORDS, attrs["mood"]))
        adjectives.append(word)
        kv.append(f"mood: {word}")
        mentioned.add("mood")
    if mention["energy"] and not (scene and "energy" in scene[1]):
        word = _pick(rng, _words(ENERGY_WORDS, FREE_ENERGY_WORDS, attrs["energy"]))
        adjectives.append(word)
        kv.append(word)
        mentioned.add("energy")
    if mention["tempo"]:
        kind = _pick(rng, ("number", "number", "band", "both"))
        band = _pick(rng, _words(TEMPO_BAND_WORDS, FREE_TEMPO_BAND_WORDS, attrs["tempo_band"]))
        if kind != "number":
            if " " not in band and rng.random() < 0.5:
                adjectives.append(band)
            else:
                fragments.append(("tempo_band", band))
            kv.append(f"tempo: {band}")
            mentioned.add("tempo_band")
        if kind != "band":
            number = tempo_phrase(attrs["tempo"], rng)
            fragments.append(("tempo", number))
            kv.append(f"tempo: {number}" if kind == "number" else number)
            mentioned.add("tempo")
    key_text = ""
    if mention["key"]:
        with_tonic = bool(rng.random() < 0.55)
        key_text = key_phrase(attrs["key"], attrs["mode"], with_tonic, rng)
        prefix = _pick(rng, ("in ", "", "in the key of ", "key of ")) if with_tonic else ""
        fragments.append(("key", prefix + key_text))
        kv.append(f"key: {key_text}" if with_tonic else key_text)
        mentioned |= {"key", "mode"} if with_tonic else {"mode"}
    lead_word = _pick(rng, _words(LEAD_WORDS, FREE_LEAD_WORDS, attrs["lead_instrument"]))
    attach_lead = bool(rng.random() < 0.35)
    if mention["lead_instrument"]:
        mentioned.add("lead_instrument")
        kv.append(f"{_pick(rng, ('lead', 'instrument', 'melody'))}: {lead_word}")
        if not attach_lead:
            fragments.append(("lead_instrument", lead_phrase(lead_word, rng, attach=False)))
    if mention["drums"] and not (scene and "drums" in scene[1]):
        on, off = DRUMS_ON + FREE_DRUMS_ON[:-1], DRUMS_OFF + FREE_DRUMS_OFF[:-2]
        fragments.append(("drums", _pick(rng, on if attrs["drums"] else off)))
        kv.append(_pick(rng, ("drums: yes",) if attrs["drums"] else ("drums: none", "drums: no")))
        mentioned.add("drums")

    style_word = _pick(rng, _words(STYLE_WORDS, FREE_STYLE_WORDS, attrs["style"]))
    if mention["style"]:
        mentioned.add("style")
        kv.insert(0, f"{_pick(rng, ('style', 'genre'))}: {style_word}")
    if scene is not None:
        mentioned |= set(scene[1])

    adjectives = [adjectives[i] for i in rng.permutation(len(adjectives))]
    fragments = [fragments[i] for i in rng.permutation(len(fragments))]
    noun = _pick(rng, FREE_NOUNS + (DRUM_NOUNS if attrs["drums"] else ()))
    if scene is not None:
        head = scene[0]
        fragments = [("", a) for a in adjectives] + fragments
    else:
        body = " ".join(adjectives + ([style_word] if mention["style"] else []) + [noun])
        head = f"{_article(body)} {body}" if rng.random() < 0.75 else body
    if mention["lead_instrument"] and attach_lead:
        head += " " + lead_phrase(lead_word, rng, attach=True)

    if shape == "tags":
        tags = ([style_word] if mention["style"] else []) + adjectives + [p for _, p in fragments]
        if mention["lead_instrument"] and attach_lead:
            tags.append(lead_word)
        tags = [tags[i] for i in rng.permutation(len(tags))] or [noun]
        text = _pick(rng, (", ", ", ", " / ", " | ", " + ", " ")).join(tags)
    elif shape == "key_value":
        text = ", ".join(kv) if kv else head
    elif shape == "sentences":
        sentences = [head] + [
            _pick(rng, ("make it ", "keep it ", "it should be ", "")) + p if a in ("tempo_band", "") else p
            for a, p in fragments
        ]
        text = " ".join(s[0].upper() + s[1:] + "." for s in sentences)
    else:
        separator = _pick(rng, (", ", ", ", ", ", " - ", "; ", " "))
        parts = [head] + [p for _, p in fragments]
        if rng.random() < 0.15 and len(parts) > 1:
            parts = parts[1:] + parts[:1]  # the head last: "120 bpm, minor key, a dark techno track"
        text = separator.join(parts)
        if shape == "request":
            text = f"{_pick(rng, OPENERS)} {text}"
            if rng.random() < 0.4:
                text += _pick(rng, (" ", ", ")) + _pick(rng, CLOSERS)
    expected = {name: attrs[name] for name in mentioned}
    text = _vary_case(text, key_text if "key" in mentioned else "", expected, rng)
    return _with_typos(text, expected, rng), sorted(mentioned)


def _vary_case(text: str, key_text: str, expected: dict, rng: np.random.Generator) -> str:
    """All lower, sentence case or (rarely) all caps; a stated tonic keeps its case, and a change
    that would make the parser read something else is not made ("A minor-key tune")."""
    roll = rng.random()
    if roll < 0.55:
        return text
    changed = text.lower() if roll < 0.8 else text[0].upper() + text[1:] if roll < 0.95 else text.upper()
    if key_text:
        at = changed.lower().find(key_text.lower())
        if at >= 0:
            changed = changed[:at] + key_text + changed[at + len(key_text) :]
    return changed if parse_caption(changed) == expected else text


def _typo(word: str, rng: np.random.Generator) -> str:
    """A swapped, dropped or doubled letter inside ``word`` (its first letter kept)."""
    i = int(rng.integers(1, len(word) - 1))
    kind = int(rng.integers(3))
    if kind == 0:
        return word[:i] + word[i + 1] + word[i] + word[i + 2 :]
    if kind == 1:
        return word[:i] + word[i + 1 :]
    return word[:i] + word[i] + word[i:]


def _with_typos(text: str, expected: dict, rng: np.random.Generator) -> str:
    """Sometimes one or two typos, only in words of 4+ letters (never digits) whose change leaves
    what the parser reads unchanged."""
    if rng.random() >= TYPO_PROBABILITY:
        return text
    wanted = 1 if rng.random() < 0.8 else 2
    words = [m for m in re.finditer(r"(?<![\w~#-])[A-Za-z]{4,}(?![\w-])", text)]
    for _ in range(4 * wanted):
        if wanted == 0 or not words:
            break
        match = words.pop(int(rng.integers(len(words))))
        candidate = text[: match.start()] + _typo(match.group(), rng) + text[match.end() :]
        if candidate == text or parse_caption(candidate) != expected:
            continue  # a swap of two equal letters, or a typo in an attribute
        text = candidate
        words = [m for m in re.finditer(r"(?<![\w~#-])[A-Za-z]{4,}(?![\w-])", text)]
        wanted -= 1
    return text


def corpus_caption(attrs: dict, mode: str, seed_parts: list[int]) -> tuple[str, list[str], str]:
    """The caption of a corpus clip -> (caption, mentioned names, "template" or "free").

    ``seed_parts`` identify the clip (corpus seed, composition, variant). The template caption is
    drawn from ``seed_parts + [7]`` as it always was, so a templates build and the template share of
    a mix give a clip the same caption; the free caption and the mix's choice from ``seed_parts +
    [8]``.
    """
    if mode not in CAPTION_MODES:
        raise ValueError(f"caption mode must be one of {', '.join(CAPTION_MODES)}, got {mode!r}")
    free_rng = np.random.default_rng([*seed_parts, 8])
    draw = free_rng.random()  # drawn in every mode: a clip's free caption is the same in free and mix
    if mode == "free" or (mode == "mix" and draw < FREE_SHARE_IN_MIX):
        return (*free_caption(attrs, free_rng), "free")
    return (*make_caption(attrs, np.random.default_rng([*seed_parts, 7])), "template")


def caption_pair(attrs: dict, rng: np.random.Generator, template_share: float = 0.0) -> tuple[str, str, list[str]]:
    """Two captions of one clip that state the same labels -> (asked, template, mentioned names).

    ``asked`` is a free caption (with probability ``template_share`` another template caption
    instead), ``template`` a template caption (``captions.make_caption``) stating exactly what
    ``asked`` states. What the caption-distillation recipe teaches: read ``asked`` as ``template``.
    """
    if rng.random() < template_share:
        asked, mentioned = make_caption(attrs, rng)
    else:
        asked, mentioned = free_caption(attrs, rng)
    template, _ = make_caption(attrs, rng, mentioned)
    return asked, template, mentioned
