"""The verdict kernel: legal cases written from the law text, then the reference and Hypothesis.

Expected limits below come from 62号令 Art. 3 and the 2016 认定标准 notes (see
schemas/policy/cn-62-2016.yaml for the sources), not from the code.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kernels.axles import MAX_AXLES
from kernels.verdicts import VerdictInputs, decide
from schemas import flags as F
from schemas.policy import load_policy
from tests.kernels.reference_verdicts import verdict as reference
from tests.law import LAW_LIMIT_KG

ROOT = Path(__file__).resolve().parents[2]
NATIONAL = load_policy("cn-62-2016")
HUNAN = load_policy("hn-2023-10pct")
T0 = 1_795_000_000_000_000  # a passage time inside the certificate window below
CERT = (T0 - 10**12, T0 + 10**12)

# Typical layouts (axle spacings in metres) of each class.
LAYOUTS = {
    "T2": [4.5],
    "T3": [4.5, 1.35],
    "C3": [3.6, 7.0],
    "T4": [1.9, 4.2, 1.35],
    "C4": [3.6, 7.0, 1.35],
    "C5": [3.4, 1.35, 7.0, 1.31],
    "C6": [3.4, 1.35, 7.0, 1.31, 1.31],
    "C6S": [1.85, 3.0, 7.0, 1.31, 1.31],
}


def one(
    spacings,
    gvw,
    *,
    policy=NATIONAL,
    speed=60.0,
    flags=0,
    ts=T0,
    cert=CERT,
    err=5.0,
    conf=0.995,
    air=-1,
    single=-1,
    rear=0,
):
    sp = np.zeros((1, MAX_AXLES - 1))
    sp[0, : len(spacings)] = spacings
    out = decide(
        VerdictInputs(
            axle_count=np.array([len(spacings) + 1]),
            axle_spacings_m=sp,
            gvw_kg=np.array([gvw]),
            speed_kmh=np.array([speed]),
            flags=np.array([flags], np.uint32),
            ts_us=np.array([ts]),
            cert_from_us=np.array([cert[0]]),
            cert_to_us=np.array([cert[1]]),
            device_error_pct=np.array([err]),
            plate_confidence=np.array([conf]),
            air_suspension=np.array([air], np.int8),
            single_tyre_axles=np.array([single]),
            rear_plate=np.array([rear], np.int8),
        ),
        policy,
    )
    return {f: getattr(out, f)[0] for f in out.__dataclass_fields__}


@pytest.mark.parametrize("code", list(LAYOUTS))
def test_each_row_of_article_3(code):
    law = LAW_LIMIT_KG[code]
    at_limit = one(LAYOUTS[code], law)
    assert NATIONAL.class_codes[at_limit["class_index"]] == code
    assert at_limit["limit_kg"] == law
    assert at_limit["verdict"] == 0  # 超限 only when GVW > limit
    assert one(LAYOUTS[code], law + 1000)["verdict"] == 1  # Art. 43: up to 1000 kg, warning
    over = one(LAYOUTS[code], law + 1001)
    assert over["verdict"] == 2
    assert over["overload_pct"] == pytest.approx(100 * 1001 / law)


def test_air_suspension_adds_1000_kg_to_t3_and_t4():
    assert one(LAYOUTS["T3"], 25500, air=1)["limit_kg"] == 26000
    assert one(LAYOUTS["T4"], 25500, air=1)["limit_kg"] == 32000
    assert one(LAYOUTS["T3"], 25500, air=0)["limit_kg"] == 25000


def test_articulated_c4_with_air_suspension_is_37_t():
    assert one(LAYOUTS["C4"], 30000, air=1)["limit_kg"] == 37000


def test_each_single_tyre_non_drive_axle_takes_3000_kg():
    assert one(LAYOUTS["C5"], 30000, single=2)["limit_kg"] == 43000 - 6000


def test_unknown_air_suspension_is_assumed_for_enforcement_only():
    r = one(LAYOUTS["T3"], 30000)
    assert r["limit_kg"] == 25000 and r["enforce_limit_kg"] == 26000


def test_provincial_margin_of_10_percent():
    r = one(LAYOUTS["C6"], 53900, policy=HUNAN)  # 4900 kg = 10 % of 49 t: not 违法超限
    assert r["verdict"] == 0
    assert one(LAYOUTS["C6"], 54901, policy=HUNAN)["verdict"] == 2
    assert one(LAYOUTS["C6"], 54900, policy=HUNAN)["verdict"] == 1


def test_enforcement_needs_the_band_plus_the_device_error_bound():
    threshold = (49000 + 1000) / (1 - 0.05)  # class 5 device: 5 % in service
    assert not one(LAYOUTS["C6"], threshold - 1)["enforceable"]
    assert one(LAYOUTS["C6"], threshold + 1)["enforceable"]
    assert one(LAYOUTS["C6"], 60000)["enforce_threshold_kg"] == pytest.approx(threshold)
    class_10 = (49000 + 1000) / (1 - 0.10)
    assert not one(LAYOUTS["C6"], class_10 - 1, err=10.0)["enforceable"]


@pytest.mark.parametrize(
    ("kwargs", "flag"),
    [
        ({"cert": (T0 - 2 * 10**12, T0 - 10**12)}, F.CERT_EXPIRED),
        ({"cert": (T0 + 1, T0 + 10**12)}, F.CERT_EXPIRED),
        ({"conf": 0.0}, F.UNIDENTIFIED),
        ({"conf": 0.6}, F.LOW_PLATE_CONFIDENCE),
        ({"speed": 130.0}, F.SPEED_OUT_OF_RANGE),
        ({"flags": F.LANE_CHANGE}, F.LANE_CHANGE),
        ({"flags": F.PLATE_FORMAT_INVALID}, F.PLATE_FORMAT_INVALID),
        ({"flags": F.FRONT_REAR_CONFLICT}, F.FRONT_REAR_CONFLICT),
    ],
)
def test_no_fine_without_valid_certificate_identity_and_clean_measurement(kwargs, flag):
    r = one(LAYOUTS["C6"], 70000, **kwargs)
    assert r["verdict"] == 2  # the law still says over the limit
    assert not r["enforceable"]  # but the evidence does not support a fine
    assert r["flags"] & flag


def test_a_spacing_near_the_group_threshold_takes_the_more_lenient_reading():
    # 2.45 m between the last two axles: a 6×4 rigid's tandem read 0.05 m long (T3, 25 t), or a
    # tractor with a semitrailer axle coupled very short (C3, 27 t): both are candidates
    r = one([3.5, 2.45], 29000)
    assert NATIONAL.class_codes[r["class_index"]] == "T3"  # the commoner configuration
    assert r["verdict"] == 2  # over the T3 limit
    assert r["flags"] & F.CLASS_AMBIGUOUS
    assert r["enforce_limit_kg"] == 27000  # but no fine below the C3 limit
    assert not r["enforceable"]


def test_a_short_coupled_four_axle_combination_is_not_a_rigid_truck():
    # the false fine the old rule gave: 3.5 m tractor wheelbase, only 4.5 m from the drive axle
    # to the trailer tandem (below the old 5.5 m combination gap), a lawful 35 t
    for spacings in ([3.5, 4.5, 1.31], [3.2, 3.0, 1.36], [3.9, 5.4, 1.31]):
        r = one(spacings, 35000)
        assert NATIONAL.class_codes[r["class_index"]] == "C4", spacings
        assert r["verdict"] == 0 and not r["enforceable"]


@pytest.mark.parametrize(
    ("spacings", "code"),
    [
        ([3.3, 4.0], "C3"),  # short-coupled 4×2 tractor + one-axle semitrailer
        ([3.2, 1.35, 4.2, 1.31], "C5"),  # 6×4 tractor + tandem, short coupling
        ([3.6, 4.6, 1.31, 1.31], "C5"),  # 4×2 tractor + tri-axle
        ([3.2, 1.35, 4.0, 1.31, 1.31], "C6"),
        ([1.9, 2.9, 4.5, 1.31, 1.31], "C6S"),  # twin-steer 6×2 tractor: single drive axle
        ([4.5, 1.35, 3.5, 4.0, 1.35], "C6"),  # 6×4 truck + three-axle drawbar trailer
    ],
)
def test_combinations_with_any_coupling_are_classified_from_their_groups(spacings, code):
    r = one(spacings, 30000)
    assert NATIONAL.class_codes[r["class_index"]] == code


def test_a_trailer_plate_at_the_rear_rules_out_a_rigid_truck():
    rigid = one(LAYOUTS["T4"], 40000, rear=2)
    assert NATIONAL.class_codes[rigid["class_index"]] == "T4" and rigid["enforceable"]
    # the same axles with a 挂 plate behind them fit no combination: no fine, to review
    r = one(LAYOUTS["T4"], 40000, rear=1)
    assert r["class_index"] == -1 and r["flags"] & F.UNCLASSIFIED and not r["enforceable"]
    # where both readings fit, the 挂 plate takes the combination
    both = one([1.9, 4.0, 2.55], 30000, rear=1)
    assert NATIONAL.class_codes[both["class_index"]] == "C4"
    assert not both["flags"] & F.CLASS_AMBIGUOUS and both["enforce_limit_kg"] == 37000


def test_the_front_plate_again_at_the_rear_supports_the_rigid_reading_but_not_a_fine():
    r = one([1.9, 4.0, 2.55], 30000, rear=2)  # as measured C4; read 0.3 m shorter, T4
    assert NATIONAL.class_codes[r["class_index"]] == "T4"
    assert r["enforce_limit_kg"] == 37000  # enforcement still gives it the combination's limit


def test_an_axle_pattern_no_configuration_has_is_unclassified():
    for spacings in ([1.9, 1.9, 1.9], [5.0, 5.0, 5.0, 5.0, 5.0, 5.0], [1.3]):
        r = one(spacings, 30000)
        assert r["class_index"] == -1 and r["flags"] & F.UNCLASSIFIED and not r["enforceable"]


def test_rear_plate_values_are_checked():
    with pytest.raises(ValueError, match="rear_plate"):
        one(LAYOUTS["T4"], 40000, rear=3)


def test_one_axle_is_unclassified_and_never_enforceable():
    r = one([], 30000)
    assert r["class_index"] == -1 and r["flags"] & F.UNCLASSIFIED and not r["enforceable"]


def test_read_only_inputs():
    sp = np.zeros((1, MAX_AXLES - 1))
    sp[0, :5] = LAYOUTS["C6"]
    sp.setflags(write=False)
    out = decide(
        VerdictInputs(
            np.array([6]),
            sp,
            np.array([60000.0]),
            60.0,
            0,
            T0,
            CERT[0],
            CERT[1],
            5.0,
            0.995,
            -1,
            -1,
        ),
        NATIONAL,
    )
    assert out.enforceable[0]


@settings(max_examples=300, deadline=None)
@given(
    k=st.integers(0, 9),
    data=st.data(),
    gvw=st.floats(500, 120_000),
    speed=st.floats(0, 140),
    conf=st.sampled_from([0.0, 0.5, 0.89, 0.9, 0.99]),
    air=st.sampled_from([-1, 0, 1]),
    single=st.sampled_from([-1, 0, 1, 2]),
    err=st.sampled_from([2.0, 5.0, 10.0]),
    cert_ok=st.booleans(),
    flag=st.sampled_from([0, F.LANE_CHANGE, F.NO_REAR, F.ACCELERATION]),
    policy=st.sampled_from([NATIONAL, HUNAN]),
    rear=st.sampled_from([0, 1, 2]),
)
def test_hypothesis_kernel_equals_reference(
    k, data, gvw, speed, conf, air, single, err, cert_ok, flag, policy, rear
):
    spacings = data.draw(
        st.lists(
            # spacings of real groups and gaps, those at the edges of the tolerance, and any
            st.one_of(
                st.sampled_from([1.31, 1.36, 1.9, 2.1, 2.4, 2.7, 3.2, 4.4, 4.6, 4.9, 7.0, 11.3]),
                st.floats(0.9, 12.0),
            ),
            min_size=max(k - 1, 0),
            max_size=max(k - 1, 0),
        )
    )
    cert = CERT if cert_ok else (0, 1)
    got = (
        one(
            spacings,
            gvw,
            policy=policy,
            speed=speed,
            flags=flag,
            cert=cert,
            err=err,
            conf=conf,
            air=air,
            single=single,
            rear=rear,
        )
        if k
        else None
    )
    if got is None:
        return
    padded = spacings + [0.0] * (MAX_AXLES - 1 - len(spacings))
    want = reference(
        {
            "axle_count": k,
            "spacings": padded,
            "gvw": gvw,
            "speed": speed,
            "flags": flag,
            "ts": T0,
            "cert_from": cert[0],
            "cert_to": cert[1],
            "err": err,
            "plate_conf": conf,
            "air": air,
            "single": single,
            "rear": rear,
        },
        policy,
    )
    assert got["class_index"] == want["class"]
    assert got["verdict"] == want["verdict"]
    assert bool(got["enforceable"]) == want["enforceable"]
    assert int(got["flags"]) == want["flags"]
    if want["class"] >= 0:
        assert got["limit_kg"] == pytest.approx(want["limit"])
        assert got["enforce_limit_kg"] == pytest.approx(want["elimit"])
        assert got["enforce_threshold_kg"] == pytest.approx(want["threshold"])


def test_warm_up_compiles_the_one_signature_every_batch_uses():
    """A worker with a helper process warms up only this kernel; the first live batch must then
    find it compiled, whatever dtypes its columns arrive in (fresh interpreter: no other test's
    compilation counts)."""
    script = """
import numpy as np
from kernels import verdicts
from kernels.axles import MAX_AXLES
from schemas.policy import load_policy
policy = load_policy("cn-62-2016")
assert not verdicts._verdicts.signatures
verdicts.warm_up(policy)
assert len(verdicts._verdicts.signatures) == 1
n = 3
verdicts.decide(verdicts.VerdictInputs(
    axle_count=np.array([2, 5, 6], dtype=np.int64),
    axle_spacings_m=np.ones((n, MAX_AXLES - 1), np.float32),
    gvw_kg=np.array([1e4, 4e4, 5e4], np.float32),
    speed_kmh=[60, 70, 80],
    flags=np.zeros(n, np.int64),
    ts_us=[1, 2, 3],
    cert_from_us=0,
    cert_to_us=10,
    device_error_pct=np.float32(5),
    plate_confidence=[0.9, 1, 0.5],
    air_suspension=np.zeros(n, np.int64),
    single_tyre_axles=[0, 1, -1],
), policy)
assert len(verdicts._verdicts.signatures) == 1, verdicts._verdicts.signatures
"""
    subprocess.run([sys.executable, "-c", script], check=True, cwd=ROOT, timeout=120)
