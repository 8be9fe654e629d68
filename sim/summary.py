"""What a simulation produced, as a dictionary for the terminal and for tests."""

from __future__ import annotations

from collections import Counter
from typing import Any

from sim.traffic import CityTraffic
from sim.vehicles import HEAVY_CODES


def summarise(traffic: CityTraffic) -> dict[str, Any]:
    truth = traffic.truth
    n = len(truth)
    heavy = [t for t in truth if t["class"] in HEAVY_CODES]
    site_reads = [r for r in traffic.reads if r["view"] in ("front", "rear")]
    readable = [r for r in site_reads if r["plate"]]
    classes = Counter(t["class"] for t in truth)
    span_s = (traffic.end_us - truth[0]["ts_us"]) / 1e6 if truth else 0.0
    return {
        "passages": n,
        "camera_reads": len(traffic.reads),
        "checkpoint_reads": sum(r["view"] == "checkpoint" for r in traffic.reads),
        "heartbeats": len(traffic.heartbeats),
        "simulated_span_s": round(span_s, 1),
        "class_mix": {c: round(classes[c] / n, 4) for c in sorted(classes)} if n else {},
        "heavy_vehicles": len(heavy),
        "overloaded_share_of_heavy": round(sum(t["overloaded"] for t in heavy) / len(heavy), 4)
        if heavy
        else 0.0,
        "site_read_unreadable_rate": round(1 - len(readable) / len(site_reads), 4)
        if site_reads
        else 0.0,
        "site_read_error_rate": round(sum(not r["_correct"] for r in readable) / len(readable), 4)
        if readable
        else 0.0,
        "covered_plates": sum(t["covered"] for t in truth),
        "bypassers": len(traffic.bypassers),
        "cloned_plates": len(traffic.cloned),
        "on_expired_certificate": sum(not t["cert_valid"] for t in truth),
    }
