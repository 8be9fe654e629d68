"""``zhichao replay``: the agents' stages over archived inputs, with an optional accuracy report.

Inputs are Avro container files (the kind told by the writer schema's name) or JSON lines (the
kind told by the fields; ``samples`` base64). Records are processed in timestamp order; the
weigh stage runs in batches of ``batch`` passages so that decoding and the axle kernel see
arrays, never single samples.
"""

from __future__ import annotations

import base64
import json
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import fastavro
import numpy as np

import schemas
from kernels.plates import JoinParams
from schemas.plate_grammar import is_trailer
from schemas.policy import Policy, load_policy
from schemas.registry import Registry
from streams.stages import Rejected, decide, measure_controller, measure_passages, usable_reads


class ReplayError(Exception):
    """An input file that cannot be replayed."""


def _kind_of_json(record: dict[str, Any]) -> str | None:
    if "samples" in record:
        return "passages"
    if "axle_loads_kg" in record and "passage_id" in record:
        return "vehicles"
    if "read_id" in record:
        return "reads"
    if "device_id" in record and "status" in record:
        return "heartbeats"
    return None


def load_inputs(paths: Iterable[Path]) -> dict[str, list[dict[str, Any]]]:
    """Read every file into lists by kind: passages, vehicles, reads, heartbeats."""
    out: dict[str, list[dict[str, Any]]] = {k: [] for k in schemas.KIND_OF_SCHEMA.values()}
    for path in paths:
        path = Path(path)
        if path.suffix == ".avro":
            with open(path, "rb") as fh:
                reader = fastavro.reader(fh)
                schema = reader.writer_schema
                name = schema.get("name", "")
                if "." not in name and schema.get("namespace"):
                    name = f"{schema['namespace']}.{name}"
                kind = schemas.KIND_OF_SCHEMA.get(name)
                if kind is None:
                    raise ReplayError(f"{path}: Avro records of {name!r} cannot be replayed")
                out[kind].extend(reader)
        elif path.suffix == ".jsonl":
            with open(path, encoding="utf-8") as fh:
                for line_no, line in enumerate(fh, 1):
                    if not line.strip():
                        continue
                    try:
                        record = json.loads(line)
                    except json.JSONDecodeError as exc:
                        raise ReplayError(f"{path}:{line_no}: not JSON ({exc})") from exc
                    kind = _kind_of_json(record)
                    if kind is None:
                        raise ReplayError(f"{path}:{line_no}: not a passage, vehicle or read")
                    if kind == "passages":
                        record["samples"] = base64.b64decode(record["samples"])
                        record.setdefault("temperature_c", None)
                        record.setdefault("tyres", None)
                        record.setdefault("air_suspension", None)
                    out[kind].append(record)
        else:
            raise ReplayError(f"{path}: give .avro or .jsonl files")
    return out


@dataclass
class ReplayReport:
    passages: int = 0
    verdicts: int = 0
    rejected: list[Rejected] = field(default_factory=list)
    seconds: float = 0.0
    counts: dict[str, int] = field(default_factory=dict)
    accuracy: dict[str, Any] | None = None

    @property
    def vehicles_per_s(self) -> float:
        return self.verdicts / self.seconds if self.seconds else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "passages": self.passages,
            "verdicts": self.verdicts,
            "rejected": Counter(r.reason for r in self.rejected),
            "seconds": round(self.seconds, 3),
            "vehicles_per_s": round(self.vehicles_per_s, 1),
            "counts": self.counts,
            "accuracy": self.accuracy,
        }

    def render(self) -> str:
        lines = [
            f"replayed {self.passages} passages -> {self.verdicts} verdicts in "
            f"{self.seconds:.2f} s ({self.vehicles_per_s:,.0f} vehicles/s)"
        ]
        lines += [f"  {k:<28} {v}" for k, v in self.counts.items()]
        if self.rejected:
            lines.append(f"  rejected inputs: {dict(Counter(r.reason for r in self.rejected))}")
        if self.accuracy:
            lines.append("accuracy against ground truth (准确度):")
            tables = ("class_confusion", "plate_reliability")
            figures = {k: v for k, v in self.accuracy.items() if k not in tables}
            lines += [f"  {k:<44} {v}" for k, v in figures.items()]
            lines += _confusion_table(self.accuracy.get("class_confusion") or {})
            lines += _reliability_table(self.accuracy.get("plate_reliability") or [])
        return "\n".join(lines)


def _reliability_table(rows: list[dict[str, Any]]) -> list[str]:
    """Stated plate confidence against how often the plate was right (车牌置信度校准)."""
    if not rows:
        return []
    lines = ["plate confidence per decile: vehicles, stated, empirical (right share):"]
    lines += [
        f"  {r['decile']}  {r['n']:>6}  {r['stated']:.4f}  {r['empirical']:.4f}" for r in rows
    ]
    return lines


def _confusion_table(confusion: dict[str, dict[str, int]]) -> list[str]:
    """Trucks by true class (rows) and the class decided (columns): 车型 confusion."""
    if not confusion:
        return []
    decided = sorted({c for row in confusion.values() for c in row})
    width = max(6, *(len(c) + 1 for c in decided))
    lines = ["class decided (columns) per true class (rows), trucks:"]
    lines.append("  " + "true".ljust(6) + "".join(c.rjust(width) for c in decided))
    for true, row in confusion.items():
        lines.append(
            "  " + true.ljust(6) + "".join(str(row.get(c, 0)).rjust(width) for c in decided)
        )
    return lines


def replay(
    inputs: dict[str, list[dict[str, Any]]],
    registry: Registry,
    policy: Policy | None = None,
    batch: int = 512,
    join: JoinParams | None = None,
) -> tuple[list[dict], ReplayReport]:
    """Verdicts of every passage and WIM vehicle in ``inputs``, in timestamp order; ``join``:
    the site join's tolerances (the worker's settings, ``streams.stages.join_params``)."""
    policy = policy or load_policy(registry.policy)
    started = time.perf_counter()
    passages = sorted(inputs["passages"], key=lambda r: (r["ts_us"], r["passage_id"]))
    measured: list[dict[str, Any]] = []
    rejected: list[Rejected] = []
    for start in range(0, len(passages), batch):
        m, bad = measure_passages(passages[start : start + batch], registry)
        measured += m
        rejected += bad
    m, bad = measure_controller(inputs["vehicles"], registry)
    measured += m
    rejected += bad
    measured.sort(key=lambda r: (r["ts_us"], r["passage_id"]))
    reads, bad = usable_reads(inputs["reads"], registry)
    rejected += bad
    reads.sort(key=lambda r: (r["ts_us"], r["read_id"]))
    verdicts = decide(measured, reads, registry, policy, join=join)
    report = ReplayReport(
        passages=len(passages) + len(inputs["vehicles"]),
        verdicts=len(verdicts),
        rejected=rejected,
        seconds=time.perf_counter() - started,
        counts={
            **{
                f"verdict={k}": v
                for k, v in sorted(Counter(x["verdict"] for x in verdicts).items())
            },
            "enforceable": sum(v["enforceable"] for v in verdicts),
            "unidentified": sum("unidentified" in v["flags"] for v in verdicts),
            "local": sum(v["local"] for v in verdicts),
        },
    )
    return verdicts, report


def write_verdicts(verdicts: list[dict[str, Any]], out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "w", encoding="utf-8") as fh:
        for v in verdicts:
            fh.write(json.dumps(v, ensure_ascii=False) + "\n")


def load_truth(path: Path) -> dict[str, dict[str, Any]]:
    with open(path, encoding="utf-8") as fh:
        rows = [json.loads(line) for line in fh if line.strip()]
    return {r["passage_id"]: r for r in rows if r.get("record", "passage") == "passage"}


def accuracy(
    verdicts: list[dict[str, Any]], truth: dict[str, dict[str, Any]], policy: Policy
) -> dict[str, Any]:
    """The issue's accuracy figures, each computed from the simulator's ground truth."""
    limits = dict(zip(policy.class_codes, policy.class_limit_kg, strict=True))
    combination = dict(zip(policy.class_codes, policy.class_combination, strict=True))
    rigid = {c for c, comb in combination.items() if not comb}
    pairs = [(v, truth[v["passage_id"]]) for v in verdicts if v["passage_id"] in truth]
    n = len(pairs)
    heavy = [(v, t) for v, t in pairs if t["gvw_kg"] >= 3500]
    gvw_err = np.array([v["gvw_kg"] / t["gvw_kg"] - 1 for v, t in heavy])
    speed_err = np.array([abs(v["speed_kmh"] - t["speed_kmh"]) for v, t in pairs])
    readable = [(v, t) for v, t in pairs if t["front_read_correct"]]

    def true_limit(t: dict[str, Any]) -> float:
        return float(limits[t["legal_class"]]) if t["legal_class"] in limits else np.inf

    def within_limit(t: dict[str, Any]) -> bool:
        return t["gvw_kg"] <= true_limit(t)

    enforceable = [(v, t) for v, t in pairs if v["enforceable"]]
    identified = [
        (v, t) for v, t in pairs if t["front_read_correct"] and not t["covered"] and t["cert_valid"]
    ]
    over_1t = [(v, t) for v, t in identified if t["gvw_kg"] - true_limit(t) > 1000]

    def provable(t: dict[str, Any]) -> bool:
        err = policy.device_error_pct(t["accuracy_class"]) / 100.0
        return t["gvw_kg"] * (1 - err) > true_limit(t) * (1 + policy.margin_pct / 100) + 1000

    over_provable = [(v, t) for v, t in over_1t if provable(t)]

    def clearly_over(t: dict[str, Any]) -> bool:
        """The plate issue's population: over by more than the band, the device's in-service
        bound and 3 % of the GVW."""
        err = policy.device_error_pct(t["accuracy_class"]) / 100.0
        return t["gvw_kg"] - true_limit(t) > policy.warning_band_kg + (err + 0.03) * t["gvw_kg"]

    clear = [(v, t) for v, t in pairs if not t["covered"] and t["cert_valid"] and clearly_over(t)]

    def enforce_limit(v: dict[str, Any], t: dict[str, Any]) -> float:
        """The limit a fine was held to, from the verdict's threshold (kernels.verdicts)."""
        err = policy.device_error_pct(t["accuracy_class"]) / 100.0
        err = err if policy.add_device_error_bound else 0.0
        thr = v["enforce_threshold_kg"]
        return (thr * (1 - err) - policy.warning_band_kg) / (1 + policy.margin_pct / 100)

    trucks = [(v, t) for v, t in pairs if t["class"] not in ("CAR", "LT")]
    confusion: dict[str, dict[str, int]] = {}
    for v, t in trucks:
        row = confusion.setdefault(t["legal_class"], {})
        row[v["vehicle_class"]] = row.get(v["vehicle_class"], 0) + 1
    classified = [(v, t) for v, t in trucks if v["vehicle_class"] != "unclassified"]
    return {
        "passages": n,
        "axle_count_correct": round(
            np.mean([v["axle_count"] == t["axle_count"] for v, t in pairs]), 5
        )
        if n
        else None,
        "gvw_within_7pct_of_vehicles_ge_3.5t": round(float(np.mean(np.abs(gvw_err) <= 0.07)), 5)
        if gvw_err.size
        else None,
        "gvw_error_std_pct": round(float(gvw_err.std() * 100), 3) if gvw_err.size else None,
        "gvw_error_p95_abs_pct": round(float(np.percentile(np.abs(gvw_err), 95) * 100), 3)
        if gvw_err.size
        else None,
        "speed_error_p95_kmh": round(float(np.percentile(speed_err, 95)), 4) if n else None,
        "front_plate_right_when_a_read_was": round(
            np.mean([v["plate_front"] == t["plate_front"] for v, t in readable]), 5
        )
        if readable
        else None,
        "enforceable": len(enforceable),
        "enforceable_truly_within_limit": sum(within_limit(t) for _, t in enforceable),
        "enforceable_on_expired_certificate": sum(not t["cert_valid"] for _, t in enforceable),
        "enforceable_unidentified": sum(
            t["covered"] or not v["plate_front"] for v, t in enforceable
        ),
        "enforceable_with_wrong_plate": sum(
            v["plate_front"] != t["plate_front"] for v, t in enforceable
        ),
        "recall_overlimit_excess_gt_1t": round(np.mean([v["enforceable"] for v, _ in over_1t]), 5)
        if over_1t
        else None,
        "recall_overlimit_beyond_error_bound": round(
            np.mean([v["enforceable"] for v, _ in over_provable]), 5
        )
        if over_provable
        else None,
        "recall_clearly_over_uncovered_valid": round(
            np.mean([v["enforceable"] for v, _ in clear]), 5
        )
        if clear
        else None,
        "clearly_over_uncovered_valid_vehicles": len(clear),
        "overlimit_excess_gt_1t_vehicles": len(over_1t),
        # classification (车型) of the trucks: right class, and the limits held to
        "class_right_of_trucks": round(
            np.mean([v["vehicle_class"] == t["legal_class"] for v, t in trucks]), 5
        )
        if trucks
        else None,
        "class_confusion": {k: dict(sorted(r.items())) for k, r in sorted(confusion.items())},
        "trucks_unclassified": len(trucks) - len(classified),
        "limit_right_of_classified_trucks": round(
            np.mean([v["limit_kg"] == true_limit(t) for v, t in classified]), 5
        )
        if classified
        else None,
        "enforceable_limit_below_true": sum(
            enforce_limit(v, t) < true_limit(t) - 1.0 for v, t in enforceable
        ),
        "enforceable_within_warning_band": sum(
            t["gvw_kg"] <= true_limit(t) + policy.warning_band_kg for _, t in enforceable
        ),
        "plate_reliability": reliability(pairs),
        "trailer_read_classified_rigid": sum(
            bool(v["plate_rear"]) and is_trailer(v["plate_rear"]) and v["vehicle_class"] in rigid
            for v, _ in pairs
        ),
    }


def reliability(pairs: list[tuple[dict[str, Any], dict[str, Any]]]) -> list[dict[str, Any]]:
    """Plate confidence per decile of stated confidence: how many, stated (mean) against
    empirical (share whose front plate is the true one)."""
    rows = [(v["plate_confidence"], v["plate_front"] == t["plate_front"]) for v, t in pairs]
    rows = [r for r, (v, _) in zip(rows, pairs, strict=True) if v["plate_front"]]
    out = []
    for d in range(10):
        lo, hi = d / 10, (d + 1) / 10
        mine = [(c, ok) for c, ok in rows if lo <= c < hi or (d == 9 and c == 1.0)]
        if mine:
            out.append(
                {
                    "decile": f"{lo:.1f}-{hi:.1f}",
                    "n": len(mine),
                    "stated": round(float(np.mean([c for c, _ in mine])), 4),
                    "empirical": round(float(np.mean([ok for _, ok in mine])), 4),
                }
            )
    return out


def replay_files(
    registry: Registry,
    files: list[Path],
    out: Path,
    truth: Path | None = None,
    policy: Policy | None = None,
    join: JoinParams | None = None,
) -> ReplayReport:
    policy = policy or load_policy(registry.policy)
    verdicts, report = replay(load_inputs(files), registry, policy, join=join)
    write_verdicts(verdicts, out)
    if truth is not None:
        report.accuracy = accuracy(verdicts, load_truth(truth), policy)
    return report
