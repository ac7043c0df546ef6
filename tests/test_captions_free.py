"""Free-phrasing corpus captions (musicrl/corpus/phrasing.py) and the hand-written paraphrase set.

Captions are generated without rendering audio (a clip's labels come from the corpus plan); two
tiny builds (1 s clips) check the build option and that the builder never reads the paraphrase set.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import numpy as np
import pytest

from models.errors import InputError
from musicrl.corpus import phrasing
from musicrl.corpus.attributes import LEAD_INSTRUMENTS, MODES, STYLES, load_manifest, tempo_band
from musicrl.corpus.build import build_corpus, clip_attributes, plan_clips
from musicrl.corpus.captions import make_caption, parse_caption
from musicrl.corpus.paraphrase import PARAPHRASE_SET, load_paraphrase_set
from musicrl.corpus.phrases import NUMBER_FORMS, SCENES, read_number_words, spell_number
from musicrl.corpus.phrasing import FREE_SHARE_IN_MIX, corpus_caption, free_caption

ROOT = Path(__file__).resolve().parents[1]
PARAPHRASES = ROOT / PARAPHRASE_SET


@pytest.fixture(scope="module")
def clips() -> list[dict]:
    """Labels of 1,200 planned clips (every style, both modes, drums and none, every lead)."""
    return [clip_attributes(item) for item in plan_clips(5, 1200)]


@pytest.fixture(scope="module")
def free(clips) -> list[tuple[dict, str, list[str]]]:
    return [(a, *free_caption(a, np.random.default_rng([5, k]))) for k, a in enumerate(clips)]


# ---------------------------------------------------------------------------------------------
# A words-to-number of the test's own (not the module's), to read tempos back independently

_SMALL = {w: i for i, w in enumerate("zero one two three four five six seven eight nine ten eleven twelve thirteen "
                                     "fourteen fifteen sixteen seventeen eighteen nineteen".split())}
_TENS = {w: 10 * i for i, w in enumerate("_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()) if i > 1}


def _words_to_number(tokens: list[str]) -> int:
    """["a", "hundred", "and", "forty"] -> 140; ["one", "forty"] -> 140; ["ninety", "two"] -> 92."""
    tokens = [t for t in tokens if t != "and"]
    tokens = ["one" if t == "a" else t for t in tokens]
    if "hundred" in tokens:
        i = tokens.index("hundred")
        return 100 * _SMALL[tokens[i - 1]] + (_words_to_number(tokens[i + 1 :]) if tokens[i + 1 :] else 0)
    if len(tokens) > 1 and tokens[0] in ("one", "two"):
        return 100 * _SMALL[tokens[0]] + _words_to_number(tokens[1:])
    return sum(_TENS.get(t, 0) + _SMALL.get(t, 0) for t in tokens)


def _tempo_in(caption: str) -> int | None:
    """The BPM a caption writes, as digits or words before "bpm" / "beats per|a minute"."""
    digits = re.search(r"(\d+)\s*-?\s*(?:bpm|beats)", caption, re.IGNORECASE)
    if digits:
        return int(digits.group(1))
    words = re.search(r"((?:[a-z]+[\s-]+)+)(?:bpm|beats)", caption, re.IGNORECASE)
    if not words:
        return None
    tokens = words.group(1).lower().replace("-", " ").split()
    number: list[str] = []
    for token in reversed(tokens):  # the trailing run of number words
        if token not in _SMALL and token not in _TENS and token not in ("hundred", "and", "a"):
            break
        number.insert(0, token)
    while number and number[0] in ("and", "a") and number[1:2] != ["hundred"]:
        number = number[1:]
    return _words_to_number(number) if number else None


def test_spell_number_round_trips_and_reads_like_people_write():
    assert spell_number(138) == "a hundred and thirty-eight"
    assert spell_number(140, "one hundred") == "one hundred forty"
    assert spell_number(128, "one-forty", hyphen=False) == "one twenty eight"
    assert spell_number(105, "one-forty") == "one hundred and five"  # "one oh five" is not written
    assert spell_number(92) == "ninety-two" and spell_number(60) == "sixty"
    for n in range(20, 300):
        for form in NUMBER_FORMS:
            for hyphen in (True, False):
                words = spell_number(n, form, hyphen)
                assert read_number_words(words) == n == _words_to_number(words.replace("-", " ").split()), words
    assert read_number_words("seventy seventy") is None and read_number_words("hundred") is None


def test_parser_reads_free_phrasing():
    assert parse_caption("~120bpm minimal techno, minor-key, drumless") == {
        "tempo": 120, "style": "techno", "mode": "minor", "drums": False}
    assert parse_caption("around a hundred and forty beats per minute, uptempo, in F sharp minor, piano-led") == {
        "tempo": 140, "tempo_band": "fast", "key": "F#", "mode": "minor", "lead_instrument": "piano"}
    assert parse_caption("an after-hours warehouse rave with a rhodes melody") == {
        "style": "techno", "drums": True, "energy": "high", "lead_instrument": "electric piano"}
    assert parse_caption("drums: none, lead: fiddle, genre: boom bap") == {
        "drums": False, "lead_instrument": "violin", "style": "hip-hop"}


def test_corpus_caption_is_deterministic_and_keeps_the_templates_reachable(clips):
    a = clips[3]
    assert corpus_caption(a, "free", [0, 3, 0]) == corpus_caption(a, "free", [0, 3, 0])
    assert corpus_caption(a, "free", [0, 3, 0]) != corpus_caption(a, "free", [1, 3, 0])
    # templates: exactly the caption earlier corpora got (seed parts + [7])
    template = make_caption(a, np.random.default_rng([0, 3, 0, 7]))
    assert corpus_caption(a, "templates", [0, 3, 0]) == (*template, "template")
    styles = []
    for k, attrs in enumerate(clips[:400]):
        caption, mentioned, style = corpus_caption(attrs, "mix", [0, k, 0])
        styles.append(style)
        same_mode = "templates" if style == "template" else "free"
        assert corpus_caption(attrs, same_mode, [0, k, 0]) == (caption, mentioned, style)  # a mix is a pick
    assert abs(styles.count("free") / len(styles) - FREE_SHARE_IN_MIX) < 0.08
    with pytest.raises(ValueError, match="caption mode"):
        corpus_caption(a, "poetry", [0, 3, 0])


def test_free_captions_state_only_true_values(free):
    """Everything the parser reads is a true label, and it reads exactly the mentioned ones: mode,
    drums, lead instrument, style, mood, energy, key and tempo all agree with the clip."""
    for attrs, caption, mentioned in free:
        assert parse_caption(caption) == {k: attrs[k] for k in mentioned}, caption
    stated = [set(m) for _, _, m in free]
    for name in ("style", "mood", "energy", "tempo", "tempo_band", "key", "mode", "lead_instrument", "drums"):
        share = np.mean([name in s for s in stated])
        assert 0.15 < share < 0.95, (name, share)  # every attribute sometimes stated, sometimes not
    assert min(len(s) for s in stated) == 1 and max(len(s) for s in stated) >= 8  # partial and full


def test_tempos_in_digits_and_words_are_the_clips_tempo(free):
    kinds = {"digits": 0, "words": 0}
    for attrs, caption, mentioned in free:
        if "tempo" in mentioned:
            assert _tempo_in(caption) == attrs["tempo"], caption
            kinds["digits" if re.search(r"\d", caption) else "words"] += 1
        else:
            assert not re.search(r"bpm|beats (?:per|a) minute", caption, re.IGNORECASE), caption
        if "tempo_band" in mentioned:
            assert parse_caption(caption)["tempo_band"] == tempo_band(attrs["tempo"])
    assert kinds["digits"] > 100 and kinds["words"] > 50, kinds


def test_typos_never_touch_numbers_or_stated_labels(free, clips, monkeypatch):
    """The same captions drawn with typos off (the typo roll still happens, so the rest of the
    caption is the same): typos changed some captions, never a digit or a number word."""
    monkeypatch.setattr(phrasing, "TYPO_PROBABILITY", 0.0)
    typos = 0
    for k, (attrs, caption, mentioned) in enumerate(free):
        clean, clean_mentioned = free_caption(attrs, np.random.default_rng([5, k]))
        assert clean_mentioned == mentioned
        if clean == caption:
            continue
        typos += 1
        assert len(clean.split()) == len(caption.split())
        assert re.findall(r"\d+", clean) == re.findall(r"\d+", caption)
        assert _tempo_in(clean) == _tempo_in(caption)
        changed = [(a, b) for a, b in zip(clean.split(), caption.split(), strict=True) if a != b]
        assert 1 <= len(changed) <= 2 and all(a[0] == b[0] for a, b in changed), changed
    assert 0.1 * len(free) < typos < 0.35 * len(free), typos


def test_free_captions_vary_far_more_than_the_templates(clips):
    """500 captions of one clip's labels: (nearly) all distinct, many openings and case forms."""
    attrs = clips[0]
    captions = [free_caption(attrs, np.random.default_rng([9, i]))[0] for i in range(500)]
    assert len(set(captions)) >= 490
    assert len({c.split()[0].lower().strip(",.") for c in captions}) >= 60
    assert sum(c == c.lower() for c in captions) > 50 and sum(c == c.upper() for c in captions) >= 3
    separators = (", ", " / ", " | ", " + ", "; ", ". ", ": ", " - ")
    assert all(any(sep in c for c in captions) for sep in separators)
    templates = {make_caption(attrs, np.random.default_rng([9, i]))[0] for i in range(500)}
    first_words = {c.split()[0].lower() for c in templates}
    assert len({c.split()[0].lower().strip(",.") for c in captions}) > 2 * len(first_words)


# ---------------------------------------------------------------------------------------------
# The paraphrase test set


def _normalised(text: str) -> str:
    return " ".join(re.sub(r"[^\w\s]", " ", text.lower()).split())


def test_paraphrase_set_loads_with_valid_labels_covering_the_vocabulary():
    prompts = load_paraphrase_set(PARAPHRASES)
    assert len(prompts) >= 64 and len({p.id for p in prompts}) == len(prompts)
    captions = {p.caption for p in prompts}
    assert "a sweaty 6am warehouse set, roughly 138 beats per minute, dark minor-key synths" in captions
    assert "a gentle lullaby on solo piano, very slow, bright major key, no percussion" in captions
    labels = [p.attributes for p in prompts]
    assert {a["style"] for a in labels if "style" in a} == set(STYLES)
    assert {a["lead_instrument"] for a in labels if "lead_instrument" in a} == set(LEAD_INSTRUMENTS)
    assert {a["mode"] for a in labels if "mode" in a} == set(MODES)
    assert {a["drums"] for a in labels if "drums" in a} == {True, False}
    assert {a["tempo_band"] for a in labels if "tempo_band" in a} == {"slow", "medium", "fast"}
    assert len({a["tempo"] for a in labels if "tempo" in a}) >= 20
    assert all(a["tempo_band"] == tempo_band(a["tempo"]) for a in labels if "tempo" in a)


@pytest.mark.parametrize(
    "line, message",
    [
        ('{"id": "x", "caption": "rock", "attributes": {"style": "grunge"}}', "style 'grunge' is not a corpus label"),
        ('{"id": "x", "caption": "sax", "attributes": {"lead_instrument": "sax"}}', "lead_instrument 'sax'"),
        ('{"id": "x", "caption": "fast", "attributes": {"tempo": "fast"}}', "tempo must be a whole BPM"),
        ('{"id": "x", "caption": "60", "attributes": {"tempo": 60, "tempo_band": "fast"}}', "in band 'slow'"),
        ('{"id": "x", "caption": "drums", "attributes": {"drums": "yes"}}', "drums must be true or false"),
        ('{"id": "x", "caption": "a", "attributes": {"genre": "rock"}}', "unknown attribute 'genre'"),
        ('{"id": "x", "caption": "a", "attributes": {}}', "non-empty object"),
        ('{"caption": ""}', "expected"),
        ("{not json", "not a JSON object"),
    ],
)
def test_paraphrase_loader_refuses_bad_lines_in_one_line(tmp_path, line, message):
    path = tmp_path / "p.jsonl"
    path.write_text('{"id": "ok", "caption": "slow jazz", "attributes": {"style": "jazz"}}\n' + line + "\n")
    with pytest.raises(InputError, match=re.escape(message)) as err:
        load_paraphrase_set(path)
    assert str(err.value).startswith(f"{path}:2: ") and "\n" not in str(err.value)


def test_paraphrase_set_is_kept_out_of_training(clips, tmp_path, monkeypatch):
    """No generated caption equals a paraphrase prompt (case, spacing and punctuation aside), no
    scene of the generator is lifted from one, and building a corpus never opens the file."""
    prompts = {_normalised(p.caption) for p in load_paraphrase_set(PARAPHRASES)}
    for k, attrs in enumerate(clips):
        for mode in ("free", "templates"):
            assert _normalised(corpus_caption(attrs, mode, [0, k, 0])[0]) not in prompts
    for scenes in SCENES.values():
        for phrase, _ in scenes:
            assert not any(_normalised(phrase) in p for p in prompts), phrase

    opened: list[str] = []
    recording = [True]

    def hook(event: str, args: tuple) -> None:
        if recording[0] and event == "open" and isinstance(args[0], (str, bytes, Path)):
            opened.append(str(args[0]))

    sys.addaudithook(hook)  # sees every open, also io.open inside pathlib; stays a no-op afterwards
    try:
        build_corpus(tmp_path / "c", num_clips=2, seed=0, duration=1.0, progress=False)
    finally:
        recording[0] = False
    assert any(p.endswith("manifest.jsonl") for p in opened)  # the hook works
    assert not [p for p in opened if Path(p).name == PARAPHRASES.name]
    for module in ("build", "captions", "phrasing", "phrases", "compose", "styles", "render"):
        assert "paraphrase_prompts" not in (ROOT / "musicrl" / "corpus" / f"{module}.py").read_text()


# ---------------------------------------------------------------------------------------------
# The build option and the eval prompt spec


def test_build_records_the_caption_style_and_refuses_to_mix_styles_on_resume(tmp_path):
    mix = build_corpus(tmp_path / "mix", num_clips=3, seed=1, duration=1.0, progress=False).parent
    assert json.loads((mix / "corpus.json").read_text())["captions"] == "mix"
    rows = load_manifest(mix)
    assert all(r["caption_style"] in ("free", "template") for r in rows)
    assert all(parse_caption(r["caption"]) == {k: r[k] for k in r["mentioned"]} for r in rows)

    old = build_corpus(tmp_path / "old", num_clips=2, seed=1, duration=1.0, progress=False, captions="templates")
    assert all("caption_style" not in r for r in load_manifest(old))
    info = old.parent / "corpus.json"
    recorded = json.loads(info.read_text())
    del recorded["captions"]  # a corpus built before the option
    info.write_text(json.dumps(recorded))
    build_corpus(old.parent, num_clips=2, seed=1, duration=1.0, progress=False, captions="templates")  # resumes
    with pytest.raises(InputError, match="captions='templates' \\(asked 'mix'\\)"):
        build_corpus(old.parent, num_clips=2, seed=1, duration=1.0, progress=False)
    with pytest.raises(InputError, match="--captions must be one of templates, free, mix"):
        build_corpus(tmp_path / "bad", num_clips=1, seed=1, captions="prose", progress=False)
    assert not (tmp_path / "bad").exists()


def test_cli_captions_option(tmp_path, capsys):
    from musicrl.cli import main

    args = ["data", "build", "--out", str(tmp_path / "c"), "--num-clips", "1", "--duration", "1", "--no-progress"]
    assert main([*args, "--captions", "verse"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--captions" in err
    assert main([*args, "--captions", "free"]) == 0
    assert load_manifest(tmp_path / "c")[0]["caption_style"] == "free"


def test_eval_reads_the_paraphrase_set_as_a_prompt_spec(tmp_path, capsys):
    from musicrl.cli import main
    from musicrl.commands.eval import load_prompts

    prompts, records, _ = load_prompts(f"paraphrase:{PARAPHRASES}")
    assert records is None and len(prompts) == len(load_paraphrase_set(PARAPHRASES))
    first = load_prompts(f"paraphrase:{PARAPHRASES}:2")[0]
    assert [p.caption for p in first] == [p.caption for p in prompts[:2]]
    # judged attributes only, as the judges spell them; a stated tempo is judged as its band
    assert first[0].attributes == {"style": "techno", "tempo_band": "fast", "mode": "minor",
                                   "lead_instrument": "synth lead", "drums": "True"}
    assert first[1].attributes == {"tempo_band": "slow", "mode": "major", "lead_instrument": "piano", "drums": "False"}
    # what only the signal judges check: a stated BPM and key (p01 says 138 BPM and minor, p02 no tempo number)
    assert first[0].exact == {"tempo": "138", "mode": "minor"} and first[1].exact == {"mode": "major"}

    out = tmp_path / "eval"
    common = ["--samples-per-prompt", "1", "--duration", "0.2", "--reference", "none", "--cfg", "1"]
    assert main(["eval", "--models", "dbg=debug", "--prompts", f"paraphrase:{PARAPHRASES}:2", *common,
                 "--out", str(out)]) == 0
    rows = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert len(rows) == 2
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "a", "caption": "x", "attributes": {"style": "polka"}}\n')
    capsys.readouterr()
    assert main(["eval", "--models", "debug", "--prompts", f"paraphrase:{bad}", "--out", str(tmp_path / "o")]) == 2
    assert "bad.jsonl:1: style 'polka'" in capsys.readouterr().err
