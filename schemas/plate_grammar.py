"""Chinese plate grammar (GA 36-2018 as summarised in reference/plates.md §0.1) and integer coding.

The alphabet codes every character a read can contain as a small integer so that the Cython
distance kernel works on ``int32`` arrays: 0 is padding, then '?', provinces, letters, digits
and suffixes. Normalisation turns a raw camera string into canonical form; validation says
which plate format it is, if any.
"""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache

import numpy as np

PROVINCES = "京津沪渝冀豫云辽黑湘皖鲁新苏浙赣鄂桂甘晋蒙陕吉闽贵粤青藏川宁琼"
AUTHORITY_LETTERS = "ABCDEFGHJKLMNOPQRSTUVWXYZ"  # any letter but I (京O exists)
SERIAL = "0123456789ABCDEFGHJKLMNPQRSTUVWXYZ"  # 34 symbols, no I, no O
SUFFIXES = "挂学警领港澳"
SPECIAL_FIRST = "使"
UNKNOWN = "?"
NEV_STRICT = "DF"

LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
DIGITS = "0123456789"
ALPHABET = UNKNOWN + PROVINCES + SPECIAL_FIRST + LETTERS + DIGITS + SUFFIXES
CODE = {ch: i + 1 for i, ch in enumerate(ALPHABET)}  # 0 = padding
N_CODES = len(ALPHABET) + 1
MAX_PLATE_LEN = 8
UNKNOWN_CODE = CODE[UNKNOWN]
PROVINCE_CODES = frozenset(CODE[p] for p in PROVINCES)
SUFFIX_CODES = frozenset(CODE[s] for s in SUFFIXES)

_PROV, _AUTH, _SER = PROVINCES, "A-HJ-Z", "0-9A-HJ-NP-Z"
PLATE_RE = re.compile(
    rf"^(?:(?P<ordinary>[{_PROV}][{_AUTH}][{_SER}]{{5}})"
    rf"|(?P<suffixed>[{_PROV}][{_AUTH}][{_SER}]{{4}}[挂学警领])"
    rf"|(?P<hkmo>粤Z[{_SER}]{{4}}[港澳])"
    rf"|(?P<nev_small>[{_PROV}][{_AUTH}][{NEV_STRICT}][{_SER}][0-9]{{4}})"
    rf"|(?P<nev_large>[{_PROV}][{_AUTH}][0-9]{{5}}[{NEV_STRICT}])"
    rf"|(?P<embassy>使[0-9]{{6}}))$"
)
_SEPARATORS = str.maketrans("", "", "·•-. \t\u3000")
_SERIAL_FIX = str.maketrans({"O": "0", "I": "1"})


@lru_cache(maxsize=1 << 16)
def normalise(raw: str) -> str:
    """Canonical form of a camera string: NFKC, upper case, no separators, O/I fixed by position.

    Characters outside the plate alphabet become '?'; an empty or all-unknown read gives ''.
    """
    text = unicodedata.normalize("NFKC", raw or "").upper().translate(_SEPARATORS)
    if not text:
        return ""
    chars = [ch if ch in CODE else UNKNOWN for ch in text[: MAX_PLATE_LEN + 2]]
    if len(chars) >= 2 and chars[1] == "0":
        chars[1] = "O"
    for i in range(2, len(chars)):
        chars[i] = chars[i].translate(_SERIAL_FIX)
    plate = "".join(chars)[:MAX_PLATE_LEN]
    return "" if set(plate) <= {UNKNOWN} else plate


@lru_cache(maxsize=1 << 16)
def plate_format(plate: str) -> str | None:
    """The GA 36 format name of a canonical plate, or None when it is not a valid plate."""
    match = PLATE_RE.match(plate)
    return match.lastgroup if match else None


def is_trailer(plate: str) -> bool:
    return plate.endswith("挂")


def authority_of(plate: str) -> str:
    """The issuing authority prefix (province + letter), e.g. 浙D; '' when unknown."""
    if len(plate) >= 2 and plate[0] in PROVINCES and plate[1] in AUTHORITY_LETTERS:
        return plate[:2]
    return ""


def encode_plates(plates: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Integer-code canonical plates: (codes int32 [n, MAX_PLATE_LEN], lengths int32 [n])."""
    codes = np.zeros((len(plates), MAX_PLATE_LEN), dtype=np.int32)
    lengths = np.zeros(len(plates), dtype=np.int32)
    for i, plate in enumerate(plates):
        plate = plate[:MAX_PLATE_LEN]
        lengths[i] = len(plate)
        for j, ch in enumerate(plate):
            codes[i, j] = CODE.get(ch, UNKNOWN_CODE)
    return codes, lengths
