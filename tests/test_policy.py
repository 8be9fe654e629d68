"""Policy tables: the national table loads with its legal values; malformed tables are rejected
with a message that names the bad entry."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml

from schemas.policy import POLICY_DIR, PolicyError, load_policy
from tests.law import LAW_LIMIT_KG as LAW


def test_national_table_has_the_limits_of_article_3():
    policy = load_policy("cn-62-2016")
    assert dict(zip(policy.class_codes, policy.class_limit_kg, strict=True)) == LAW
    assert policy.version == "cn-62-2016/v1"
    assert policy.warning_band_kg == 1000
    assert policy.margin_pct == 0
    assert policy.class_limit_kg.dtype == np.float64
    assert policy.class_axles_max[policy.class_codes.index("C6")] == 99


def test_every_class_and_adjustment_names_its_source():
    raw = yaml.safe_load((POLICY_DIR / "cn-62-2016.yaml").read_text(encoding="utf-8"))
    for entry in raw["vehicle_classes"]:
        assert entry["source"] and entry["confidence"] in ("primary", "secondary", "recalled")
    for name, entry in raw["adjustments"].items():
        assert entry["source"], name


# "每超1000千克罚款500元", whole tonnes (floor, the table's rounding), at most 30 000 CNY.
@pytest.mark.parametrize(
    ("excess", "fine"),
    [(999, 0), (1000, 0), (1001, 500), (1999, 500), (2000, 1000), (2001, 1000), (80_000, 30_000)],
)
def test_article_43_fine(excess, fine):
    assert load_policy().fine_cny(excess) == fine


def test_provincial_table_is_data_not_code():
    national, hunan = load_policy("cn-62-2016"), load_policy("hn-2023-10pct")
    assert hunan.margin_pct == 10 and national.margin_pct == 0
    assert hunan.version != national.version
    np.testing.assert_array_equal(hunan.class_limit_kg, national.class_limit_kg)


def test_device_error_bound_by_class():
    policy = load_policy()
    assert policy.device_error_pct(5) == 5.0
    assert policy.device_error_pct(10) == 10.0
    with pytest.raises(PolicyError, match="accuracy class 3"):
        policy.device_error_pct(3)


def _broken(tmp_path: Path, mutate) -> Path:
    raw = yaml.safe_load((POLICY_DIR / "cn-62-2016.yaml").read_text(encoding="utf-8"))
    mutate(raw)
    path = tmp_path / "broken.yaml"
    path.write_text(yaml.safe_dump(raw, allow_unicode=True), encoding="utf-8")
    return path


def _set(path, value):
    def mutate(raw):
        node = raw
        for key in path[:-1]:
            node = node[key]
        if value is KeyError:
            del node[path[-1]]
        else:
            node[path[-1]] = value

    return mutate


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (
            _set(["vehicle_classes", 3, "gvw_limit_kg"], -1),
            r"vehicle_classes\[3\] \(T4\): gvw_limit_kg must be a positive number",
        ),
        (
            _set(["vehicle_classes", 0, "gvw_limit_kg"], "18 t"),
            r"vehicle_classes\[0\] \(T2\): gvw_limit_kg must be a finite number",
        ),
        (_set(["vehicle_classes", 2, "code"], "T2"), r"vehicle_classes\[2\] \(T2\): duplicate"),
        (
            _set(["vehicle_classes", 4, "confidence"], "rumour"),
            r"vehicle_classes\[4\] \(C4\): confidence must be one of",
        ),
        (_set(["vehicle_classes", 5, "source"], ""), r"vehicle_classes\[5\] \(C5\): every legal"),
        (
            _set(["vehicle_classes", 1, "axles"], KeyError),
            r"vehicle_classes\[1\] \(T3\): give exactly one of axles",
        ),
        (
            _set(["vehicle_classes", 7, "tractor_single_drive_axle"], False),
            r"\(C6, C6S\): both classes match",
        ),
        (_set(["penalty", "units_rounding"], "round"), r"penalty: units_rounding"),
        (
            _set(["enforcement", "forbidding_flags"], ["lane_change", "wobbly"]),
            r"enforcement.forbidding_flags: unknown flag name\(s\): wobbly",
        ),
        (_set(["enforcement", "speed_range_kmh"], [100, 5]), r"speed_range_kmh"),
        (_set(["enforcement", "min_plate_confidence"], 1.5), r"min_plate_confidence"),
        (
            _set(["enforcement", "device_error_bound_pct"], {"five": 5}),
            r"device_error_bound_pct\[five\]",
        ),
        (
            _set(["adjustments", "single_tyre_non_drive_axle_kg", "value"], 3000),
            r"single_tyre_non_drive_axle_kg: value must be <= 0",
        ),
        (_set(["classification"], KeyError), r"classification: missing"),
    ],
)
def test_malformed_table_is_rejected_naming_the_entry(tmp_path, mutate, message):
    with pytest.raises(PolicyError, match=message) as info:
        load_policy(_broken(tmp_path, mutate))
    assert "broken.yaml" in str(info.value)


def test_unknown_policy_name_lists_the_known_ones():
    with pytest.raises(PolicyError, match="cn-62-2016"):
        load_policy("atlantis")


def test_extends_loop_is_reported(tmp_path):
    (tmp_path / "a.yaml").write_text(
        "id: a\nversion: a\ntitle: a\nextends: " + str(tmp_path / "a.yaml") + "\n", encoding="utf-8"
    )
    with pytest.raises(PolicyError, match="loops"):
        load_policy(tmp_path / "a.yaml")
