"""Load the plate-confidence calibration (``schemas/policy/plate-calibration.yaml``): per source
of plate evidence and kind of evidence, the knots of a monotone map from score to probability.
Written by ``zhichao calibrate-plates``; checked here so that a hand edit that breaks
monotonicity or leaves [0, 1] is refused at start-up, not used."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

DEFAULT_PATH = Path(__file__).resolve().parent / "policy" / "plate-calibration.yaml"
SOURCES = ("camera", "gateway")
KINDS = ("one_view", "several_views", "invalid_format")


def check_map(name: str, m: Any) -> None:
    """A map is two equally long lists: scores rising from 0 to 1, probabilities not falling."""
    if not isinstance(m, dict) or not {"score", "probability"} <= set(m):
        raise ValueError(f"{name}: needs 'score' and 'probability' lists")
    xs, ys = m["score"], m["probability"]
    if not (isinstance(xs, list) and isinstance(ys, list) and len(xs) == len(ys) >= 2):
        raise ValueError(f"{name}: 'score' and 'probability' are lists of one length >= 2")
    if not all(isinstance(v, int | float) and 0.0 <= v <= 1.0 for v in xs + ys):
        raise ValueError(f"{name}: every score and probability lies in [0, 1]")
    if xs[0] != 0.0 or xs[-1] != 1.0:
        raise ValueError(f"{name}: scores run from 0 to 1, got {xs[0]} .. {xs[-1]}")
    if any(b <= a for a, b in zip(xs, xs[1:], strict=False)):
        raise ValueError(f"{name}: scores must rise strictly")
    if any(b < a for a, b in zip(ys, ys[1:], strict=False)):
        raise ValueError(f"{name}: probabilities must not fall as the score rises")


def load_plate_calibration(path: str | Path = DEFAULT_PATH) -> dict[str, Any]:
    with open(path, encoding="utf-8") as fh:
        table = yaml.safe_load(fh)
    name = Path(path).name
    if not isinstance(table, dict) or "version" not in table or "maps" not in table:
        raise ValueError(f"{name}: needs 'version' and 'maps'")
    for source in SOURCES:
        kinds = table["maps"].get(source)
        if not isinstance(kinds, dict):
            raise ValueError(f"{name}: no maps for source {source!r}")
        for kind in KINDS:
            if kind not in kinds:
                raise ValueError(f"{name}: {source} has no map for {kind!r}")
            check_map(f"{name}: {source}/{kind}", kinds[kind])
    return table
