"""Fit the plate-confidence calibration (``schemas/policy/plate-calibration.yaml``).

A fusion score orders plates by evidence but is not a probability: frames of one camera share
its view, a misread repeats, a vendor's confidence is whatever its OCR makes it. The map is
fitted on outcomes, each a plate identity's score, its kind of evidence and whether the plate
was right: from simulated traffic (the simulator knows every true plate), and, once reviewers
have confirmed or corrected plates (审核), from their decisions, which are the real ground
truth. Isotonic regression (scikit-learn) keeps the map monotone without assuming its shape;
each step's rate is smoothed by one right and one wrong outcome (Laplace), so that a step seen
only right on a few vehicles never states certainty.
"""

from __future__ import annotations

import datetime as dt
import json
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from kernels.plates import evidence_kind
from schemas.plate_calibration import KINDS, SOURCES, check_map
from schemas.plate_grammar import plate_format
from schemas.registry import Registry

KNOT_DECIMALS = 6


@dataclass(frozen=True)
class Outcome:
    source: str  # camera | gateway
    kind: str  # kernels.plates.evidence_kind
    score: float
    right: bool


def camera_outcomes(registry: Registry, seeds: Iterable[int], vehicles: int) -> list[Outcome]:
    """Every identified vehicle of simulated traffic through the replay's identity path."""
    from sim.config import SimConfig
    from sim.traffic import CitySimulator
    from streams.stages import identify_matched, join_site_reads, measure_passages, usable_reads

    out = []
    for seed in seeds:
        traffic = CitySimulator(SimConfig(vehicles=vehicles, seed=seed), registry).run()
        truth = {t["passage_id"]: t for t in traffic.truth}
        measured = []
        passages = sorted(traffic.passages, key=lambda r: (r["ts_us"], r["passage_id"]))
        for start in range(0, len(passages), 512):
            measured += measure_passages(passages[start : start + 512], registry)[0]
        measured.sort(key=lambda r: (r["ts_us"], r["passage_id"]))
        reads = sorted(usable_reads(traffic.reads, registry)[0], key=lambda r: r["ts_us"])
        matched = join_site_reads(measured, reads, registry)
        for m, ident in zip(measured, identify_matched(measured, matched, registry), strict=True):
            if not ident.plate_front:
                continue
            kind = evidence_kind(ident.views, plate_format(ident.plate_front) is not None)
            right = ident.plate_front == truth[m["passage_id"]]["plate_front"]
            out.append(Outcome("camera", kind, ident.score, right))
    return out


def gateway_outcomes(registry: Registry, seeds: Iterable[int], vehicles: int) -> list[Outcome]:
    """Gateway rows of simulated traffic, with the simulated vendor's confidences."""
    from sim.config import SimConfig
    from sim.gateway import pool_of, truth_rows
    from sim.traffic import CitySimulator
    from streams.gateway import identify

    out = []
    for seed in seeds:
        truth = CitySimulator(SimConfig(vehicles=vehicles, seed=seed), registry).run().truth
        pool = pool_of(truth, seed)
        rows = truth_rows(truth)
        trailer = np.array([p.endswith("挂") for p in pool.plate_rear], dtype=bool)
        ident = identify(
            pool.plate_front, pool.plate_rear, pool.front_confidence, pool.rear_confidence, trailer
        )
        for i, t in enumerate(rows):
            plate = ident.plate_front[i]
            if not plate:
                continue
            kind = evidence_kind(int(ident.views[i]), plate_format(plate) is not None)
            out.append(Outcome("gateway", kind, float(ident.score[i]), plate == t["plate_front"]))
    return out


def read_outcomes(path: Path) -> list[Outcome]:
    """Reviewed outcomes, one JSON object per line: ``source``, ``kind``, ``score``, ``right``
    (a reviewer's 确认 is right, a corrected plate is wrong)."""
    out = []
    with open(path, encoding="utf-8") as fh:
        for n, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                outcome = Outcome(
                    str(row["source"]), str(row["kind"]), float(row["score"]), bool(row["right"])
                )
            except (ValueError, KeyError, TypeError) as exc:
                raise ValueError(f"{path.name}:{n}: not an outcome ({exc})") from None
            if outcome.source not in SOURCES or outcome.kind not in KINDS:
                raise ValueError(f"{path.name}:{n}: unknown source/kind {row}")
            if not 0.0 <= outcome.score <= 1.0:
                raise ValueError(f"{path.name}:{n}: score must lie in [0, 1]")
            out.append(outcome)
    return out


def fit_map(scores: np.ndarray, right: np.ndarray) -> dict[str, list[float]]:
    """Isotonic fit of ``right`` on ``scores``, each step smoothed, as knots from 0 to 1.
    Without outcomes the map states 0 everywhere: no evidence, no claim."""
    if scores.size == 0:
        return {"score": [0.0, 1.0], "probability": [0.0, 0.0]}
    from sklearn.isotonic import IsotonicRegression

    iso = IsotonicRegression(y_min=0.0, y_max=1.0, increasing=True, out_of_bounds="clip")
    fitted = iso.fit_transform(scores, right.astype(float))
    # each step (a run of equal fitted values) is replaced by its Laplace-smoothed rate
    steps: dict[float, list[int]] = defaultdict(lambda: [0, 0])
    for value, ok in zip(fitted.tolist(), right.tolist(), strict=True):
        steps[value][0] += int(ok)
        steps[value][1] += 1
    smooth = {v: (k + 1.0) / (n + 2.0) for v, (k, n) in steps.items()}
    xs = np.round(np.asarray(iso.X_thresholds_, dtype=float), KNOT_DECIMALS)
    ys = np.array([smooth[v] for v in np.asarray(iso.y_thresholds_, dtype=float).tolist()])
    ys = np.maximum.accumulate(ys)
    knots: dict[float, float] = {}
    for x, y in zip(xs.tolist(), ys.tolist(), strict=True):
        knots[x] = max(knots.get(x, 0.0), y)  # rounding may merge knots: keep the later value
    if 0.0 not in knots:
        knots[0.0] = min(knots.values())
    if 1.0 not in knots:
        knots[1.0] = max(knots.values())
    score = sorted(knots)
    probability = np.maximum.accumulate([knots[x] for x in score])
    return {
        "score": [float(x) for x in score],
        "probability": [round(float(y), KNOT_DECIMALS) for y in probability],
    }


def fit(outcomes: list[Outcome]) -> dict[str, dict[str, dict[str, Any]]]:
    """A map per source and kind of evidence, with what it was fitted on."""
    maps: dict[str, dict[str, dict[str, Any]]] = {s: {} for s in SOURCES}
    for source in SOURCES:
        for kind in KINDS:
            mine = [o for o in outcomes if o.source == source and o.kind == kind]
            scores = np.array([o.score for o in mine], dtype=float)
            right = np.array([o.right for o in mine], dtype=bool)
            m = fit_map(scores, right)
            check_map(f"{source}/{kind}", m)
            maps[source][kind] = {"outcomes": len(mine), "right": int(right.sum()), **m}
    return maps


def write_calibration(
    maps: dict[str, Any], out: Path, fitted_on: dict[str, Any], today: dt.date | None = None
) -> None:
    today = today or dt.date.today()
    header = (
        "# The probability that a plate identity is right, per source of plate evidence and kind\n"
        "# of evidence, as a monotone map from its score (kernels.plates.calibration).\n"
        "# Written by `zhichao calibrate-plates`; refit it (never edit by hand) when cameras,\n"
        "# the OCR or the fusion change, and with reviewers' confirmations once they exist.\n"
    )
    body = {"version": f"plate-calibration-{today.isoformat()}", "fitted_on": fitted_on}
    body["maps"] = maps
    text = header + yaml.safe_dump(body, allow_unicode=True, sort_keys=False, width=100)
    out.write_text(text, encoding="utf-8")
