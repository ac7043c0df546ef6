"""The app's rules for a user's input: the UI's sliders use the same ranges, and the services check
them once per request, before anything is queued or stored. A model's own rules (prompt, duration,
sampling parameters) are its ``MusicGenerator.plan``'s, also checked once.

Text (prompts, feedback, rater ids) is plain text (``models.generator.check_plain_text``, the one
rule): no control characters (NUL, ANSI escapes, …), no lone surrogates and no bidirectional
overrides (which can make a stored text display as something else in an admin's terminal or
table). A refusal is an :class:`InputError` whose message is meant for the user.
"""

from __future__ import annotations

import math
import re

from models.errors import InputError
from models.generator import check_plain_text

CFG_RANGE = (0.0, 10.0)
TEMPERATURE_RANGE = (0.05, 2.0)
TOP_K_RANGE = (0, 1000)  # 0 = no limit
SEED_RANGE = (-1, 2**31 - 1)  # -1 = a random seed
MAX_VARIATIONS = 4
DEFAULT_CFG, DEFAULT_TEMPERATURE, DEFAULT_TOP_K = 3.0, 1.0, 250
RATER_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:@-]{0,63}$")


def number(name: str, value: object, low: float, high: float, *, integer: bool = False) -> float:
    """A finite number in [low, high] (a whole one when ``integer``)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InputError(f"{name} must be a number, got {type(value).__name__}")
    if not math.isfinite(value):
        raise InputError(f"{name} must be a finite number, got {value}")
    if integer and value != int(value):
        raise InputError(f"{name} must be a whole number, got {value:g}")
    if not low <= value <= high:
        raise InputError(f"{name} must be between {low:g} and {high:g}, got {value:g}")
    return float(value)


def clean_text(value: object, what: str, max_chars: int, *, allow_empty: bool = False,
               keep_newlines: bool = False) -> str:
    """Plain text of at most ``max_chars`` characters, stripped; whitespace runs collapse to one
    space (line breaks kept with ``keep_newlines``). ``what`` names the field in messages."""
    if value is None:
        value = ""
    if not isinstance(value, str):
        raise InputError(f"{what} must be text")
    if len(value) > max_chars:
        raise InputError(f"{what} has {len(value)} characters; the maximum is {max_chars}")
    check_plain_text(value, what)
    if keep_newlines:
        text = "\n".join(" ".join(line.split()) for line in value.replace("\r\n", "\n").split("\n")).strip()
    else:
        text = " ".join(value.split())
    if not text and not allow_empty:
        raise InputError(f"{what} is empty")
    return text


def collapse_whitespace(prompt: object) -> object:
    """A prompt with its whitespace runs collapsed to one space (anything but text is passed on as it
    is: the model's ``plan`` checks prompts, ``models.generator.validate_prompt``)."""
    return " ".join(prompt.split()) if isinstance(prompt, str) else prompt


def clean_feedback(feedback: object, max_chars: int) -> str:
    """Optional free-text feedback with a vote ("" when none)."""
    return clean_text(feedback, "feedback", max_chars, allow_empty=True, keep_newlines=True)


def clean_rater_id(rater_id: object) -> str | None:
    """A rater id is 1-64 of ``A-Z a-z 0-9 . _ : @ -`` (starting with a letter or digit); "" or None = anonymous."""
    if rater_id is None or (isinstance(rater_id, str) and not rater_id.strip()):
        return None
    if not isinstance(rater_id, str) or not RATER_ID_RE.match(rater_id.strip()):
        raise InputError("the rater id must be 1-64 letters, digits, '.', '_', ':', '@' or '-'")
    return rater_id.strip()
