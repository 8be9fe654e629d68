"""``bench/report.md``: every section from a run's figures, plots as PNG files, and a missed
target shown as missed."""

from __future__ import annotations

from bench.report import write_report
from bench.run import TARGETS

LATENCY = {"0.1": {"p50": 40, "p95": 80, "p99": 120}, "0.5": {"p50": 90, "p95": 200, "p99": 480}}
RESULTS = {
    "machine_info": {"cpu": {"brand_raw": "Test CPU"}},
    "benchmarks": {
        "test_pipeline_vs_bare_faust_and_quix": {
            "extra_info": {
                "bare_faust_messages_per_s": 6000.0,
                "bare_faust_stock_messages_per_s": 6000.0,
                "bare_faust_own_transport_messages_per_s": 9000.0,
                "raw_pipeline_vs_bare_faust": 5000.0 / 6000.0,
                "raw_pipeline_vs_stock_faust": 5000.0 / 6000.0,
                "raw_pipeline_vs_own_transport": 5000.0 / 9000.0,
                "bare_quix_messages_per_s": 40000.0,
                "pipeline_messages_per_s": 5000.0,
                "raw_pipeline_vs_bare_faust_pairs": [0.91, 0.83, 0.74],
                "raw_pipeline_vs_own_transport_pairs": [0.61, 0.55, 0.49],
                "messages_per_vehicle": 3.9,
                "produce_to_verdict_ms": LATENCY,
                "paced": {
                    "0.5": {
                        "vehicles_per_s": 300.0,
                        "speedup": 157.0,
                        "verdict_ms": LATENCY["0.5"],
                        "broker_ms": {"p50": 19, "p95": 40, "p99": 57},
                        "floor_ms": {"p50": 35, "p95": 61, "p99": 86},
                        "beyond_floor_ms": {"p50": 55, "p95": 150, "p99": 410},
                    }
                },
            }
        },
        "test_batched_gateway_vs_quix": {
            "extra_info": {
                "faust_bare_vehicle_messages_per_s": 9500.0,
                "quix_bare_vehicle_messages_per_s": 150000.0,
                "batched_vehicles_per_s": 120000.0,
                "batched_latency_ms": LATENCY,
            }
        },
        "test_scale_out_one_and_two_workers": {
            "extra_info": {
                "vehicles_per_s_1_workers": 1100.0,
                "vehicles_per_s_2_workers": 1300.0,
                "two_vs_one_worker": 1.18,
            }
        },
        "test_worker_rss_with_a_million_plates": {
            "extra_info": {
                "plates": 1_000_000,
                "worker_rss_1m_plates_mib": 270.0,
                "worker_rss_no_plates_mib": 268.0,
                "redis_used_1m_plates_mib": 180.0,
            }
        },
    },
}


def test_the_report_has_every_section_plots_and_missed_targets(tmp_path):
    summary = {
        "raw_pipeline_vs_bare_faust": 0.55,
        "batched_vehicles_per_s": 120000.0,
        "batched_vs_quix_bare": 0.8,
        "p99_produce_to_verdict_ms_at_50pct": 480.0,
        "worker_rss_1m_plates_mib": 270.0,
        "_machine": {"cores": 2},
    }
    write_report(RESULTS, summary, TARGETS, tmp_path)
    text = (tmp_path / "report.md").read_text(encoding="utf-8")
    for heading in ("Against the peers", "per stage", "Latency", "Scale-out", "million plates"):
        assert heading in text
    assert (
        "The headline, `raw_pipeline_vs_bare_faust` 0.83, is against the bare Faust loop as "
        "Faust ships it" in text
    )
    assert "`raw_pipeline_vs_own_transport` 0.56 is against the same loop on" in text
    assert "[docs/performance.md](../docs/performance.md)" in text
    pairs = "the 3 pairs were 0.91, 0.83, 0.74 against Faust as shipped (0.61, 0.55, 0.49 on"
    assert pairs in text and "the figures above are the median pair's by the headline" in text
    assert "Test CPU" in text and "ratios measured in the same run are the headline" in text
    rows = {line.split("|")[1].strip(" `"): line for line in text.splitlines() if "| `" in line}
    assert "missed" in rows["raw_pipeline_vs_bare_faust"]
    assert "missed" in rows["batched_vs_quix_bare"]
    assert "✅" in rows["batched_vehicles_per_s"] and "✅" in rows["worker_rss_1m_plates_mib"]
    assert "| batched gateway | 50% | 90 | 200 | 480 |" in text
    bounds = "| 50% | 300 | 157 × | 90 / 480 ms | 19 / 57 ms | 35 / 86 ms | 55 / 410 ms |"
    assert bounds in text
    for name in ("peers", "stages", "latency", "scale"):
        assert (tmp_path / f"report-{name}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_run_saved_under_the_old_names_is_reported_under_the_new_ones(tmp_path):
    """Runs saved before the headline was Faust as shipped called the loop on the worker's
    transport ``bare_faust``; ``make bench BENCH=kernels`` still reports them."""
    old = dict(RESULTS["benchmarks"]["test_pipeline_vs_bare_faust_and_quix"]["extra_info"])
    for key in (
        "bare_faust_own_transport_messages_per_s",
        "raw_pipeline_vs_own_transport",
        "raw_pipeline_vs_own_transport_pairs",
    ):
        del old[key]
    old |= {"bare_faust_messages_per_s": 9000.0, "raw_pipeline_vs_bare_faust": 5000.0 / 9000.0}
    results = {
        **RESULTS,
        "benchmarks": {"test_pipeline_vs_bare_faust_and_quix": {"extra_info": old}},
    }
    write_report(results, {}, TARGETS, tmp_path)
    text = (tmp_path / "report.md").read_text(encoding="utf-8")
    assert "`raw_pipeline_vs_bare_faust` 0.83" in text
    assert "`raw_pipeline_vs_own_transport` 0.56" in text


CASES = {
    "test_case_store_vs_bare_copy": {
        "extra_info": {
            "rows": 102_400,
            "batch": 1024,
            "rounds": 3,
            "cases_opened": 40_000,
            "cases_rows_per_s": 30000.0,
            "cases_bare_copy_rows_per_s": 50000.0,
            "cases_vs_copy": 0.6,
            "cases_vs_copy_rounds": [0.58, 0.6, 0.63],
        }
    }
}


def test_a_run_of_one_part_keeps_the_other_parts_sections_where_they_stood(tmp_path):
    """``make bench BENCH=cases`` on a checkout without the other parts' saved results."""
    write_report(RESULTS, {"batched_vehicles_per_s": 120000.0}, TARGETS, tmp_path)
    before = (tmp_path / "report.md").read_text(encoding="utf-8")
    summary = {
        "batched_vehicles_per_s": 120000.0,
        "cases_rows_per_s": 30000.0,
        "cases_vs_copy": 0.6,
    }
    results = {**RESULTS, "benchmarks": CASES}
    write_report(results, summary, TARGETS, tmp_path, previous=before)
    text = (tmp_path / "report.md").read_text(encoding="utf-8")
    headings = [line for line in text.splitlines() if line.startswith("## ")]
    assert headings == [
        "## Summary (`bench/summary.json`)",
        "## Against the peers",
        "## Throughput per stage",
        "## Latency",
        "## Scale-out",
        "## Memory with a million plates",
        "## Store of record",
    ]
    assert "`cases_vs_copy` 0.600 of a bare `COPY` of the same 102,400 rows" in text
    assert "30,000 verdict rows/s" in text and "ratios were 0.58, 0.60, 0.63." in text
    assert "Two workers reach 1.18× one worker." in text
    assert "\n\n\n" not in text and "\n## Store of record" in text
    rows = {line.split("|")[1].strip(" `"): line for line in text.splitlines() if "| `" in line}
    assert "✅" in rows["cases_rows_per_s"] and "✅" in rows["cases_vs_copy"]
