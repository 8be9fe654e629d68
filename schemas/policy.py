"""Load and validate a policy table (``schemas/policy/*.yaml``) into arrays for the verdict kernel.

A policy may ``extends:`` another one; mappings are merged key by key, lists are replaced. Any
malformed entry raises :class:`PolicyError` with the file and the path of the bad entry, e.g.
``cn-62-2016.yaml: vehicle_classes[3] (T4): gvw_limit_kg must be a positive number, got -1``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from schemas import flags
from schemas.columns import MAX_AXLES

POLICY_DIR = Path(__file__).resolve().parent / "policy"
CONFIDENCE_LEVELS = ("primary", "secondary", "recalled", "assumption")


class PolicyError(ValueError):
    """A policy table that cannot be used, with the entry at fault."""


@dataclass(frozen=True)
class Policy:
    """A validated policy with the arrays the verdict kernel reads (index = vehicle class)."""

    id: str
    version: str
    title: str
    class_codes: tuple[str, ...]
    class_names: tuple[str, ...]
    class_axles_min: np.ndarray  # int32
    class_axles_max: np.ndarray  # int32, 99 = open-ended
    class_combination: np.ndarray  # int8 0/1
    class_single_drive: np.ndarray  # int8 -1 any, 0 tandem drive, 1 single drive
    class_limit_kg: np.ndarray  # float64
    class_air_bonus_kg: np.ndarray  # float64, added when air suspension
    class_air_limit_kg: np.ndarray  # float64, replaces the limit when air suspension (0 = none)
    # axle configurations (``axle_configurations``), in the policy's order of likelihood
    pattern_names: tuple[str, ...]
    pattern_class: np.ndarray  # int32, index into the classes
    pattern_groups: np.ndarray  # int32 [n, MAX_AXLES]: axles per group, 0 past the last group
    pattern_axles: np.ndarray  # int32: axles of each configuration (the sum of its groups)
    pattern_group_count: np.ndarray  # int32: groups of each configuration
    pattern_gap_lo_m: np.ndarray  # float64 [n, MAX_AXLES - 1]: range of each gap between groups
    pattern_gap_hi_m: np.ndarray
    group_spacing_max_m: float
    ambiguity_tolerance_m: float
    heavy_vehicle_min_gvw_kg: float
    single_tyre_reduction_kg: float
    warning_band_kg: float
    margin_pct: float
    add_device_error_bound: bool
    device_error_bound_pct: dict[float, float]
    min_plate_confidence: float
    speed_min_kmh: float
    speed_max_kmh: float
    forbidding_mask: int
    penalty_cny_per_1000_kg: float
    penalty_cap_cny: float
    penalty_rounding: str
    raw: dict[str, Any] = field(repr=False, compare=False)

    def device_error_pct(self, accuracy_class: float) -> float:
        """Error bound (% of weight) for a device class; unknown classes are an error."""
        try:
            return self.device_error_bound_pct[float(accuracy_class)]
        except KeyError:
            known = sorted(self.device_error_bound_pct)
            raise PolicyError(
                f"{self.id}: no device error bound for accuracy class {accuracy_class}; "
                f"known classes {known}"
            ) from None

    def fine_cny(self, excess_kg: float) -> int:
        """Art. 43 fine for the weight part; 0 within the warning band."""
        if not excess_kg > self.warning_band_kg:
            return 0
        tonnes = excess_kg / 1000.0
        units = math.ceil(tonnes) if self.penalty_rounding == "ceil" else math.floor(tonnes)
        return int(min(self.penalty_cap_cny, units * self.penalty_cny_per_1000_kg))


def _merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        with open(path, encoding="utf-8") as fh:
            data = yaml.safe_load(fh)
    except yaml.YAMLError as exc:
        raise PolicyError(f"{path.name}: not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise PolicyError(f"{path.name}: a policy is a mapping at the top level")
    return data


def resolve_policy_path(name_or_path: str | Path) -> Path:
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml") and path.exists():
        return path
    candidate = POLICY_DIR / f"{name_or_path}.yaml"
    if candidate.exists():
        return candidate
    known = sorted(p.stem for p in POLICY_DIR.glob("*.yaml"))
    raise PolicyError(f"no policy {name_or_path!r}: give a .yaml path or one of {known}")


def _load_merged(path: Path, seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    data = _read_yaml(path)
    parent = data.get("extends")
    if parent is None:
        return data
    parent_path = resolve_policy_path(parent).resolve()
    if parent_path in (*seen, path.resolve()):
        raise PolicyError(f"{path.name}: 'extends' loops through {parent}")
    base = _load_merged(parent_path, (*seen, path.resolve()))
    child = {k: v for k, v in data.items() if k != "extends"}
    return _merge(base, child)


class _Checker:
    """Reads typed values from the merged mapping; errors name the file and the entry path."""

    def __init__(self, filename: str):
        self.filename = filename

    def fail(self, where: str, message: str) -> PolicyError:
        return PolicyError(f"{self.filename}: {where}: {message}")

    def section(self, data: dict[str, Any], key: str, where: str = "") -> dict[str, Any]:
        value = data.get(key)
        if not isinstance(value, dict):
            raise self.fail(where + key, "missing, or not a mapping")
        return value

    def number(
        self,
        data: dict[str, Any],
        key: str,
        where: str,
        *,
        positive: bool = False,
        min_value: float | None = None,
        default: float | None = None,
    ) -> float:
        value = data.get(key, default)
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not math.isfinite(value)
        ):
            raise self.fail(where, f"{key} must be a finite number, got {value!r}")
        if positive and value <= 0:
            raise self.fail(where, f"{key} must be a positive number, got {value!r}")
        if min_value is not None and value < min_value:
            raise self.fail(where, f"{key} must be >= {min_value}, got {value!r}")
        return float(value)

    def confidence(self, entry: dict[str, Any], where: str) -> None:
        level = entry.get("confidence")
        if level not in CONFIDENCE_LEVELS:
            raise self.fail(where, f"confidence must be one of {CONFIDENCE_LEVELS}, got {level!r}")
        if not entry.get("source"):
            raise self.fail(where, "every legal entry needs a source")


def _classes(data: dict[str, Any], check: _Checker) -> list[dict[str, Any]]:
    entries = data.get("vehicle_classes")
    if not isinstance(entries, list) or not entries:
        raise check.fail("vehicle_classes", "must be a non-empty list")
    seen: set[str] = set()
    classes = []
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict):
            raise check.fail(f"vehicle_classes[{i}]", "must be a mapping")
        code = entry.get("code")
        where = f"vehicle_classes[{i}] ({code})"
        if not isinstance(code, str) or not code:
            raise check.fail(where, "code must be a non-empty string")
        if code in seen:
            raise check.fail(where, f"duplicate class code {code}")
        seen.add(code)
        if ("axles" in entry) == ("axles_min" in entry):
            raise check.fail(where, "give exactly one of axles or axles_min")
        key = "axles" if "axles" in entry else "axles_min"
        axles = check.number(entry, key, where, min_value=2)
        if axles != int(axles):
            raise check.fail(where, f"{key} must be a whole number, got {axles}")
        if not isinstance(entry.get("combination"), bool):
            raise check.fail(where, "combination must be true or false")
        single_drive = entry.get("tractor_single_drive_axle")
        if single_drive is not None and not isinstance(single_drive, bool):
            raise check.fail(where, "tractor_single_drive_axle must be true, false or absent")
        check.confidence(entry, where)
        classes.append(
            {
                "code": code,
                "name": str(entry.get("name", code)),
                "axles_min": int(axles),
                "axles_max": int(axles) if key == "axles" else 99,
                "combination": entry["combination"],
                "single_drive": -1 if single_drive is None else int(single_drive),
                "limit": check.number(entry, "gvw_limit_kg", where, positive=True),
                "air_bonus": check.number(
                    entry, "air_suspension_bonus_kg", where, min_value=0, default=0
                ),
                "air_limit": check.number(
                    entry, "air_suspension_limit_kg", where, min_value=0, default=0
                ),
            }
        )
    if len(classes) > 63:
        raise check.fail("vehicle_classes", "at most 63 classes (the kernel's candidate mask)")
    _check_unambiguous(classes, check)
    return classes


def _check_unambiguous(classes: list[dict[str, Any]], check: _Checker) -> None:
    """Two classes must not claim the same (axle count, combination, single drive) layout."""
    for a_i, a in enumerate(classes):
        for b in classes[a_i + 1 :]:
            overlap = a["axles_min"] <= b["axles_max"] and b["axles_min"] <= a["axles_max"]
            drives_overlap = -1 in (a["single_drive"], b["single_drive"]) or (
                a["single_drive"] == b["single_drive"]
            )
            if overlap and a["combination"] == b["combination"] and drives_overlap:
                raise check.fail(
                    f"vehicle_classes ({a['code']}, {b['code']})",
                    "both classes match the same axle layout",
                )


def _patterns(data: dict[str, Any], classes: list[dict[str, Any]], check: _Checker):
    """The axle configurations as arrays; each must fit its class's axle count."""
    section = check.section(data, "axle_configurations")
    check.confidence(section, "axle_configurations")
    entries = section.get("patterns")
    if not isinstance(entries, list) or not entries:
        raise check.fail("axle_configurations.patterns", "must be a non-empty list")
    codes = [c["code"] for c in classes]
    n = len(entries)
    names, of_class = [], np.zeros(n, np.int32)
    groups = np.zeros((n, MAX_AXLES), np.int32)
    lo, hi = np.zeros((n, MAX_AXLES - 1)), np.zeros((n, MAX_AXLES - 1))
    for i, entry in enumerate(entries):
        where = f"axle_configurations.patterns[{i}]"
        if not isinstance(entry, dict):
            raise check.fail(where, "must be a mapping")
        code = entry.get("class")
        if code not in codes:
            raise check.fail(where, f"class must be one of {codes}, got {code!r}")
        sizes, gaps = entry.get("groups"), entry.get("gaps_m")
        if (
            not isinstance(sizes, list)
            or not sizes
            or not all(isinstance(g, int) and not isinstance(g, bool) and g >= 1 for g in sizes)
        ):
            raise check.fail(where, f"groups must be a list of axles per group, got {sizes!r}")
        axles = sum(sizes)
        cls = classes[codes.index(code)]
        if not cls["axles_min"] <= axles <= min(cls["axles_max"], MAX_AXLES):
            raise check.fail(where, f"{axles} axles do not fit class {code}")
        if not isinstance(gaps, list) or len(gaps) != len(sizes) - 1:
            raise check.fail(where, f"gaps_m needs one [min, max] per gap: {len(sizes) - 1}")
        for j, gap in enumerate(gaps):
            ok = (
                isinstance(gap, list)
                and len(gap) == 2
                and all(isinstance(x, int | float) and not isinstance(x, bool) for x in gap)
                and 0 < gap[0] <= gap[1]
            )
            if not ok:
                raise check.fail(where, f"gaps_m[{j}] must be [min, max] in metres, got {gap!r}")
            lo[i, j], hi[i, j] = gap
        names.append(str(entry.get("name", code)))
        of_class[i] = codes.index(code)
        groups[i, : len(sizes)] = sizes
    return tuple(names), of_class, groups, lo, hi


def load_policy(name_or_path: str | Path = "cn-62-2016") -> Policy:
    """Load, merge (``extends``) and validate a policy by name or path."""
    path = resolve_policy_path(name_or_path)
    data = _load_merged(path)
    check = _Checker(path.name)
    for key in ("id", "version", "title"):
        if not isinstance(data.get(key), str) or not data[key]:
            raise check.fail(key, "must be a non-empty string")
    classes = _classes(data, check)
    names, of_class, groups, gap_lo, gap_hi = _patterns(data, classes, check)

    cls_cfg = check.section(data, "classification")
    adjustments = check.section(data, "adjustments")
    single_tyre = check.section(adjustments, "single_tyre_non_drive_axle_kg", "adjustments.")
    check.confidence(single_tyre, "adjustments.single_tyre_non_drive_axle_kg")
    reduction = check.number(single_tyre, "value", "adjustments.single_tyre_non_drive_axle_kg")
    if reduction > 0:
        raise check.fail("adjustments.single_tyre_non_drive_axle_kg", "value must be <= 0")

    penalty = check.section(data, "penalty")
    check.confidence(penalty, "penalty")
    rounding = penalty.get("units_rounding")
    if rounding not in ("ceil", "floor"):
        raise check.fail("penalty", f"units_rounding must be ceil or floor, got {rounding!r}")

    enforcement = check.section(data, "enforcement")
    check.confidence(enforcement, "enforcement")
    bounds_raw = enforcement.get("device_error_bound_pct")
    if not isinstance(bounds_raw, dict) or not bounds_raw:
        raise check.fail("enforcement.device_error_bound_pct", "must map accuracy class to %")
    bounds = {}
    for cls, pct in bounds_raw.items():
        where = f"enforcement.device_error_bound_pct[{cls}]"
        try:
            cls_value = float(cls)
        except ValueError:
            raise check.fail(where, "the accuracy class must be a number") from None
        bounds[cls_value] = check.number({"pct": pct}, "pct", where, min_value=0)
    speed = enforcement.get("speed_range_kmh")
    if (
        not isinstance(speed, list)
        or len(speed) != 2
        or not all(isinstance(s, int | float) and not isinstance(s, bool) for s in speed)
        or not 0 <= speed[0] < speed[1]
    ):
        raise check.fail("enforcement.speed_range_kmh", f"must be [min, max], got {speed!r}")
    try:
        forbidding = flags.from_names(list(enforcement.get("forbidding_flags") or []))
    except ValueError as exc:
        raise check.fail("enforcement.forbidding_flags", str(exc)) from None
    min_conf = check.number(enforcement, "min_plate_confidence", "enforcement", min_value=0)
    if min_conf > 1:
        raise check.fail("enforcement", f"min_plate_confidence must be <= 1, got {min_conf}")

    return Policy(
        id=data["id"],
        version=data["version"],
        title=data["title"],
        class_codes=tuple(c["code"] for c in classes),
        class_names=tuple(c["name"] for c in classes),
        class_axles_min=np.array([c["axles_min"] for c in classes], dtype=np.int32),
        class_axles_max=np.array([c["axles_max"] for c in classes], dtype=np.int32),
        class_combination=np.array([c["combination"] for c in classes], dtype=np.int8),
        class_single_drive=np.array([c["single_drive"] for c in classes], dtype=np.int8),
        class_limit_kg=np.array([c["limit"] for c in classes], dtype=np.float64),
        class_air_bonus_kg=np.array([c["air_bonus"] for c in classes], dtype=np.float64),
        class_air_limit_kg=np.array([c["air_limit"] for c in classes], dtype=np.float64),
        pattern_names=names,
        pattern_class=of_class,
        pattern_groups=groups,
        pattern_axles=groups.sum(axis=1, dtype=np.int32),
        pattern_group_count=np.count_nonzero(groups, axis=1).astype(np.int32),
        pattern_gap_lo_m=gap_lo,
        pattern_gap_hi_m=gap_hi,
        group_spacing_max_m=check.number(
            cls_cfg, "group_spacing_max_m", "classification", positive=True
        ),
        ambiguity_tolerance_m=check.number(
            cls_cfg, "ambiguity_tolerance_m", "classification", min_value=0
        ),
        heavy_vehicle_min_gvw_kg=check.number(
            cls_cfg, "heavy_vehicle_min_gvw_kg", "classification", positive=True
        ),
        single_tyre_reduction_kg=-reduction,
        warning_band_kg=check.number(data, "warning_band_kg", "warning_band_kg", min_value=0),
        margin_pct=check.number(enforcement, "margin_pct", "enforcement", min_value=0),
        add_device_error_bound=bool(enforcement.get("add_device_error_bound", True)),
        device_error_bound_pct=bounds,
        min_plate_confidence=min_conf,
        speed_min_kmh=float(speed[0]),
        speed_max_kmh=float(speed[1]),
        forbidding_mask=forbidding,
        penalty_cny_per_1000_kg=check.number(penalty, "cny_per_1000_kg", "penalty", positive=True),
        penalty_cap_cny=check.number(penalty, "cap_cny", "penalty", positive=True),
        penalty_rounding=rounding,
        raw=data,
    )
