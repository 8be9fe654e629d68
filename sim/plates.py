"""Plates of simulated vehicles, and the camera OCR error model of reference/plates.md §2.

Error mix of a misread (plates.md §2.1, the only published breakdown): look-alike substitution
45 %, trailing truncation 25 %, other substitution 12 %, missing middle character 8 %,
province / authority error 6 %, several errors 4 %.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from schemas.plate_grammar import AUTHORITY_LETTERS, PROVINCES, SERIAL

LOCAL_PROVINCE, LOCAL_LETTER = "浙", "D"
STRONG = [("0", "D"), ("0", "Q"), ("8", "B"), ("2", "Z"), ("5", "S"), ("6", "G")]
WEAK = [
    ("D", "Q"),
    ("1", "7"),
    ("1", "T"),
    ("1", "L"),
    ("7", "T"),
    ("0", "C"),
    ("C", "G"),
    ("8", "9"),
    ("U", "V"),
    ("M", "N"),
    ("E", "F"),
    ("P", "R"),
    ("4", "A"),
    ("K", "X"),
]
LOOKALIKE: dict[str, list[str]] = {}
for a, b in STRONG + WEAK:
    LOOKALIKE.setdefault(a, []).append(b)
    LOOKALIKE.setdefault(b, []).append(a)
ERROR_KINDS = ("lookalike", "truncation", "substitution", "missing_middle", "province", "multiple")
ERROR_WEIGHTS = np.array([0.45, 0.25, 0.12, 0.08, 0.06, 0.04])
DIGIT_HEAVY = "0123456789" * 3 + "ABCDEFGHJKLMNPQRSTUVWXYZ"  # real serials are digit-heavy


def _serial(rng: np.random.Generator, n: int) -> str:
    return "".join(DIGIT_HEAVY[int(i)] for i in rng.integers(len(DIGIT_HEAVY), size=n))


def new_plate(
    rng: np.random.Generator, *, local: bool, trailer: bool = False, nev: bool = False
) -> str:
    """A valid plate: local (浙D) or from elsewhere; a 挂 trailer plate; or a green NEV plate."""
    if local:
        prefix = LOCAL_PROVINCE + LOCAL_LETTER
    else:
        province = PROVINCES[int(rng.integers(len(PROVINCES)))]
        letter = AUTHORITY_LETTERS[int(rng.integers(len(AUTHORITY_LETTERS)))]
        if province == LOCAL_PROVINCE and letter == LOCAL_LETTER:
            letter = "A"
        prefix = province + letter
    if trailer:
        return prefix + _serial(rng, 4) + "挂"
    if nev:
        return (
            prefix
            + "D"
            + SERIAL[int(rng.integers(len(SERIAL)))]
            + _serial(rng, 4).translate(
                str.maketrans("ABCDEFGHJKLMNPQRSTUVWXYZ", "012345678901234567890123")
            )
        )
    return prefix + _serial(rng, 5)


@dataclass(frozen=True)
class Read:
    plate: str  # what the camera sent ('' = unreadable)
    char_conf: list[float]
    confidence: float
    correct: bool
    error_kind: str  # '' when correct


def _misread(rng: np.random.Generator, plate: str) -> tuple[str, set[int], str]:
    """A wrong read of ``plate``: (text, positions whose characters changed, error kind)."""
    kind = ERROR_KINDS[int(rng.choice(len(ERROR_KINDS), p=ERROR_WEIGHTS))]
    chars = list(plate)
    changed: set[int] = set()
    if kind == "lookalike":
        spots = [i for i, c in enumerate(chars) if i >= 1 and c in LOOKALIKE]
        if not spots:
            kind = "substitution"
        else:
            i = spots[int(rng.integers(len(spots)))]
            options = LOOKALIKE[chars[i]]
            chars[i] = options[int(rng.integers(len(options)))]
            changed.add(i)
    if kind == "substitution":
        i = int(rng.integers(2, len(chars)))
        new = SERIAL[int(rng.integers(len(SERIAL)))]
        while new == chars[i]:
            new = SERIAL[int(rng.integers(len(SERIAL)))]
        chars[i] = new
        changed.add(i)
    elif kind == "truncation":
        cut = 1 + int(rng.random() < 0.3)
        chars = chars[: len(chars) - cut]
    elif kind == "missing_middle":
        del chars[int(rng.integers(2, len(chars) - 1))]
    elif kind == "province":
        others = [p for p in PROVINCES if p != chars[0]]
        # cameras bias unclear first characters toward the site's province (plates.md §2.3)
        chars[0] = (
            LOCAL_PROVINCE
            if chars[0] != LOCAL_PROVINCE and rng.random() < 0.5
            else (others[int(rng.integers(len(others)))])
        )
        changed.add(0)
    elif kind == "multiple":
        for i in rng.choice(np.arange(2, len(chars)), size=2, replace=False):
            chars[int(i)] = SERIAL[int(rng.integers(len(SERIAL)))]
            changed.add(int(i))
    text = "".join(chars)
    if text == plate:  # a substitution that happened to restore the truth
        chars = list(plate)
        chars = chars[:-1]
        kind = "truncation"
        text = "".join(chars)
        changed = set()
    return text, changed, kind


def misread(rng: np.random.Generator, plate: str) -> str:
    """A wrong reading of ``plate`` (one of the error kinds of ``plates.md`` §2)."""
    return _misread(rng, plate)[0]


def camera_read(
    rng: np.random.Generator,
    plate: str,
    *,
    error_rate: float,
    unreadable_rate: float,
    confident_error_share: float,
) -> Read:
    """One camera read of ``plate`` through the OCR error model."""
    if not plate or rng.random() < unreadable_rate:
        return Read("", [], 0.0, False, "unreadable")
    if rng.random() >= error_rate:
        conf = [float(1.0 - abs(rng.normal(0.0, 0.008))) for _ in plate]
        return Read(plate, conf, float(np.prod(conf)), True, "")
    text, changed, kind = _misread(rng, plate)
    confident = rng.random() < confident_error_share
    conf = []
    for i in range(len(text)):
        if i in changed:
            conf.append(float(rng.uniform(0.88, 0.97) if confident else rng.uniform(0.25, 0.8)))
        else:
            conf.append(float(1.0 - abs(rng.normal(0.0, 0.01))))
    if kind in ("truncation", "missing_middle") and conf:
        conf[-1] = float(min(conf[-1], rng.uniform(0.4, 0.9)))
    return Read(text, conf, float(np.prod(conf)), False, kind)
