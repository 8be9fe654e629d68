"""The simulator: deterministic, the configured mix and error rates, int16-safe signals that
follow the DESIGN §1 convention."""

from __future__ import annotations

import datetime as dt
import json
import math
import time
from collections import Counter

import numpy as np
import pytest

from sim.config import DEFAULT_MIX, SimConfig
from sim.signals import SensorLayout, make_calibration, synthesise
from sim.traffic import CitySimulator
from sim.vehicles import HEAVY_CODES


def _within(observed: int, n: int, p: float, sigmas: float = 4.0) -> bool:
    """Binomial count within ``sigmas`` standard deviations of its expectation."""
    return abs(observed - n * p) <= sigmas * math.sqrt(n * p * (1 - p)) + 1


def test_class_mix_matches_the_configuration(city_traffic):
    counts = Counter(t["class"] for t in city_traffic.truth)
    n = len(city_traffic.truth)
    assert n == 2000
    for code, share in DEFAULT_MIX.items():
        assert _within(counts[code], n, share), (code, counts[code], n * share)


def test_overloaded_share_matches_the_configuration(city_traffic):
    heavy = [t for t in city_traffic.truth if t["class"] in HEAVY_CODES]
    overloaded = sum(t["overloaded"] for t in heavy)
    assert _within(overloaded, len(heavy), SimConfig().overloaded_share)


def test_overload_tail_reaches_far_but_not_past_double():
    cfg = SimConfig(vehicles=3000, overloaded_share=1.0, mix={"C6": 1.0})
    from sim.vehicles import make_vehicle

    rng = np.random.default_rng(1)
    excess = np.array([make_vehicle(rng, "C6", cfg).gvw_kg / 49000 - 1 for _ in range(3000)])
    assert excess.min() > 0
    assert excess.max() <= 1.0 + 1e-9
    assert excess.max() > 0.6  # the exponential tail is there
    assert 0.12 < excess.mean() < 0.24


def test_ocr_error_rates_match_the_configuration(city_traffic):
    cfg = SimConfig()
    truth = {t["passage_id"]: t for t in city_traffic.truth}
    del truth
    for view, rate in (("front", cfg.read_error_rate_front), ("rear", cfg.read_error_rate_rear)):
        reads = [r for r in city_traffic.reads if r["view"] == view and r["_error"] != "unreadable"]
        wrong = sum(not r["_correct"] for r in reads)
        assert _within(wrong, len(reads), rate), (view, wrong / len(reads), rate)
    site = [r for r in city_traffic.reads if r["view"] in ("front", "rear")]
    unreadable = sum(r["_error"] == "unreadable" for r in site)
    covered_reads = sum(not r["plate"] and r["_error"] == "unreadable" for r in site)
    assert covered_reads >= unreadable  # covered plates are unreadable too
    assert _within(unreadable, len(site), cfg.unreadable_rate, sigmas=6.0)


def test_misreads_follow_the_published_error_mix(city_traffic):
    kinds = Counter(
        r["_error"] for r in city_traffic.reads if r["_error"] not in ("", "unreadable")
    )
    n = sum(kinds.values())
    assert n > 200
    # look-alike substitutions are the most common error, then truncation (plates.md §2.1)
    assert kinds.most_common(2)[0][0] == "lookalike"
    assert kinds["truncation"] > kinds["substitution"]


def test_every_raw_signal_is_int16_safe(city_traffic):
    for p in city_traffic.passages:
        raw = p["samples"]
        channels = p["rows"] * p["segments"]
        assert len(raw) % (2 * channels) == 0
        x = np.frombuffer(raw, dtype="<i2")
        assert x.size // channels > 64
        assert x.max() < 32767 and x.min() > -32768  # no clipping at the default loads
        assert len(p["calib"]) == channels and all(c > 0 for c in p["calib"])


def test_tractor_plate_in_front_and_trailer_plate_at_the_rear(city_traffic):
    articulated = [t for t in city_traffic.truth if t["articulated"]]
    assert articulated
    assert all(
        t["plate_rear"].endswith("挂") and not t["plate_front"].endswith("挂") for t in articulated
    )
    rigid = [t for t in city_traffic.truth if not t["articulated"]]
    assert all(t["plate_front"] == t["plate_rear"] for t in rigid)


def test_expired_certificate_passages_are_marked_in_truth(city_traffic):
    expired = {t["site_id"] for t in city_traffic.truth if not t["cert_valid"]}
    assert expired == {"SX-S308-K045-U"}


def test_checkpoints_bypassers_and_heartbeat_outage(city_traffic, registry):
    assert sum(r["view"] == "checkpoint" for r in city_traffic.reads) > 500
    bypass_sites = {c.id for c in registry.checkpoints if c.bypass_of}
    seen_on_bypass = {r["plate"] for r in city_traffic.reads if r["site_id"] in bypass_sites}
    assert city_traffic.bypassers and seen_on_bypass
    per_device = Counter(h["device_id"] for h in city_traffic.heartbeats)
    assert min(per_device.values()) < max(per_device.values())  # one device went silent
    assert any(h["status"] == "abnormal" for h in city_traffic.heartbeats)


def test_same_seed_same_traffic(registry):
    a = CitySimulator(SimConfig(vehicles=40, seed=7), registry).run()
    b = CitySimulator(SimConfig(vehicles=40, seed=7), registry).run()
    c = CitySimulator(SimConfig(vehicles=40, seed=8), registry).run()
    assert [p["samples"] for p in a.passages] == [p["samples"] for p in b.passages]
    assert [r["plate"] for r in a.reads] == [r["plate"] for r in b.reads]
    assert [p["samples"] for p in a.passages] != [p["samples"] for p in c.passages]


def _design_load(
    samples: np.ndarray, calib: np.ndarray, layout: SensorLayout, row: int, speed: float
) -> float:
    """DESIGN §1: load = Σ_segments C · (v / L) · Σ(x − baseline) / fs, baseline = mean of 32."""
    total = 0.0
    for s in range(layout.segments):
        c = row * layout.segments + s
        x = samples[c].astype(np.float64)
        baseline = x[:32].mean()
        total += calib[c] * (speed / layout.sensor_width_m) * (x - baseline).sum() / layout.fs_hz
    return total


@pytest.mark.parametrize("fs", [1000, 2000, 5000])
@pytest.mark.parametrize("kmh", [5.0, 40.0, 100.0])
def test_clean_pulse_integrates_to_the_true_load(fs, kmh):
    layout = SensorLayout(fs_hz=fs, rows=4, segments=2, row_spacing_m=1.0, sensor_width_m=0.05)
    rng = np.random.default_rng(3)
    cal = make_calibration(rng, layout, noise_scale=0.0)
    load = 9_000.0
    passage = synthesise(
        rng,
        layout,
        cal,
        np.array([load]),
        np.array([]),
        kmh / 3.6,
        0.22,
        0.0,
        dynamic=False,
        noise=False,
    )
    for row in range(layout.rows):
        estimate = _design_load(passage.samples, cal.calib, layout, row, kmh / 3.6)
        assert abs(estimate - load) / load < 0.005, (row, estimate)


def test_simulate_cli_writes_inputs_and_truth(tmp_path):
    from click.testing import CliRunner

    from zhichao.cli import main

    result = CliRunner().invoke(
        main,
        ["simulate", "--vehicles", "2000", "--out", str(tmp_path), "--quiet", "--format", "both"],
    )
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output.strip().splitlines()[-1])
    assert summary["passages"] == 2000
    for name in (
        "wim_passages.avro",
        "camera_reads.avro",
        "device_heartbeats.avro",
        "wim_passages.jsonl",
        "truth.jsonl",
        "manifest.json",
    ):
        assert (tmp_path / name).stat().st_size > 0
    truth_lines = (tmp_path / "truth.jsonl").read_text(encoding="utf-8").splitlines()
    assert sum(json.loads(line)["record"] == "passage" for line in truth_lines) == 2000


def test_simulate_cli_starts_at_the_archive_day_or_when_told(tmp_path):
    """Files are reproducible (the archive day); ``--start`` moves them (China time if no
    offset is given); a feed to Kafka starts now, or a worker would refuse it as too old."""
    from click.testing import CliRunner

    from schemas.registry import CHINA
    from sim.config import ARCHIVE_START
    from zhichao.cli import _start_of, main

    def first_passage_us(*extra):
        out = tmp_path / str(len(list(tmp_path.iterdir())))
        args = ["simulate", "--vehicles", "5", "--out", str(out), "--quiet", "--format", "jsonl"]
        result = CliRunner().invoke(main, args + list(extra))
        assert result.exit_code == 0, result.output
        lines = (out / "wim_passages.jsonl").read_text(encoding="utf-8").splitlines()
        return min(json.loads(line)["ts_us"] for line in lines)

    archive_us = ARCHIVE_START.timestamp() * 1e6
    assert 0 <= first_passage_us() - archive_us < 60e6
    moved = dt.datetime(2031, 5, 6, 7, tzinfo=CHINA).timestamp() * 1e6
    assert 0 <= first_passage_us("--start", "2031-05-06T07:00") - moved < 60e6
    bad = CliRunner().invoke(main, ["simulate", "--out", str(tmp_path / "x"), "--start", "May"])
    assert bad.exit_code == 2 and "ISO 8601" in bad.output
    assert abs(_start_of(None, live=True).timestamp() - time.time()) < 5


def test_a_simulated_quarter_has_the_rhythm_of_day_and_week_and_regular_trucks(registry):
    """``zhichao simulate --days``: arrivals follow the hour and weekday weights (each share
    within 4 σ of its binomial expectation), and regular trucks come back under their plates."""
    from schemas.registry import CHINA
    from sim.config import HOUR_WEIGHTS, WEEKDAY_WEIGHTS, days_of_traffic

    start = dt.datetime(2026, 7, 6, tzinfo=CHINA)  # a Monday
    config = SimConfig(seed=8, start=start, **days_of_traffic(28, 150))
    traffic = CitySimulator(config, registry).run()
    times = [dt.datetime.fromtimestamp(p["ts_us"] / 1e6, CHINA) for p in traffic.passages]
    n = len(times)
    assert 27 <= (times[-1] - times[0]).days <= 29
    hours = Counter(t.hour for t in times)
    for hour, weight in enumerate(HOUR_WEIGHTS):
        assert _within(hours[hour], n, weight / 24), (hour, hours[hour], n * weight / 24)
    days = Counter(t.weekday() for t in times)  # four whole weeks from a Monday
    for day, weight in enumerate(WEEKDAY_WEIGHTS):
        assert _within(days[day], n, weight / 7), (day, days[day], n * weight / 7)
    plates = Counter(t["plate_front"] for t in traffic.truth if t["class"] in HEAVY_CODES)
    regulars = [p for p, k in plates.items() if k >= 5]
    assert len(regulars) >= 30  # 50 regulars, 40 % of about 2,000 heavy trips
