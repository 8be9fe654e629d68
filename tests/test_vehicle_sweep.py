"""Every configuration the simulator builds, at every corner of its geometry (and a measurement
error beyond it), is classified so that no fine could rest on a limit below the vehicle's own:
its legal class as measured, and an enforcement limit never below that class's limit."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from kernels.axles import MAX_AXLES
from kernels.verdicts import REAR_SAME, REAR_TRAILER, VerdictInputs, decide
from schemas.policy import load_policy
from sim.vehicles import HEAVY_CODES, LAYOUTS
from tests.law import LAW_LIMIT_KG

POLICY = load_policy("cn-62-2016")
T0 = 1_795_000_000_000_000
HEAVY = [(c, i, layout) for c in sorted(HEAVY_CODES) for i, layout in enumerate(LAYOUTS[c])]


def _judge(rows: list[list[float]], rear: int, gvw: float):
    n = len(rows)
    spacings = np.zeros((n, MAX_AXLES - 1))
    for i, row in enumerate(rows):
        spacings[i, : len(row)] = row
    return decide(
        VerdictInputs(
            axle_count=np.array([len(r) + 1 for r in rows]),
            axle_spacings_m=spacings,
            gvw_kg=np.full(n, gvw),
            speed_kmh=60.0,
            flags=0,
            ts_us=T0,
            cert_from_us=T0 - 1,
            cert_to_us=T0 + 1,
            device_error_pct=1.0,
            plate_confidence=1.0,
            air_suspension=-1,
            single_tyre_axles=-1,
            rear_plate=rear,
        ),
        POLICY,
    )


def _corners(layout) -> list[list[float]]:
    ranges = layout.spacings_m
    mids = [[(lo + hi) / 2 for lo, hi in ranges]]
    return mids + [list(c) for c in itertools.product(*ranges)]


@pytest.mark.parametrize(("code", "variant", "layout"), HEAVY, ids=lambda x: str(x)[:24])
def test_every_corner_is_its_legal_class(code, variant, layout):
    rows = _corners(layout)
    rear = REAR_TRAILER if layout.articulated else REAR_SAME
    result = _judge(rows, rear, LAW_LIMIT_KG[layout.legal_class] * 1.2)
    got = [POLICY.class_codes[c] if c >= 0 else None for c in result.class_index]
    wrong = [(r, g) for r, g in zip(rows, got, strict=True) if g != layout.legal_class]
    assert not wrong, (layout.name, wrong[:5])
    assert (result.enforce_limit_kg >= LAW_LIMIT_KG[layout.legal_class]).all()


@pytest.mark.parametrize(("code", "variant", "layout"), HEAVY, ids=lambda x: str(x)[:24])
@pytest.mark.parametrize("rear", [0, REAR_TRAILER, REAR_SAME])
def test_no_corner_read_a_little_off_is_held_to_a_lower_limit(code, variant, layout, rear):
    """Each spacing of each corner read 0.15 m shorter or longer (a poor measurement), with any
    rear plate: the vehicle is unclassified or its enforcement limit is at least its own."""
    rng = np.random.default_rng(variant)
    rows = []
    for corner in _corners(layout):
        for _ in range(8):
            rows.append([s + rng.choice([-0.15, 0.0, 0.15]) for s in corner])
    result = _judge(rows, rear, 80_000.0)
    true = LAW_LIMIT_KG[layout.legal_class]
    low = [
        (r, POLICY.class_codes[c], e)
        for r, c, e, enf in zip(
            rows, result.class_index, result.enforce_limit_kg, result.enforceable, strict=True
        )
        if enf and e < true
    ]
    assert not low, (layout.name, low[:5])
