"""``bench.run.summarise``: the pipeline benchmark's figures under every name ``summary.json``
has carried, the headline against the bare Faust loop as Faust ships it."""

from __future__ import annotations

from bench.run import summarise

LATENCY = {"0.5": {"p50": 90.0, "p95": 150.0, "p99": 190.0}}
PIPELINE = {
    "bare_faust_messages_per_s": 7000.0,
    "bare_faust_stock_messages_per_s": 7000.0,
    "bare_faust_own_transport_messages_per_s": 11000.0,
    "bare_quix_messages_per_s": 16000.0,
    "pipeline_messages_per_s": 5500.0,
    "pipeline_vehicles_per_s": 1300.0,
    "raw_pipeline_vs_bare_faust": 5500.0 / 7000.0,
    "raw_pipeline_vs_stock_faust": 5500.0 / 7000.0,
    "raw_pipeline_vs_own_transport": 5500.0 / 11000.0,
    "raw_pipeline_vs_bare_quix": 5500.0 / 16000.0,
    "produce_to_verdict_ms": LATENCY,
}


def test_the_headline_is_against_faust_as_shipped_and_the_own_transport_beside_it():
    raw = {"benchmarks": [{"name": "test_pipeline_vs_bare_faust_and_quix", "extra_info": PIPELINE}]}
    out = summarise(raw)
    assert out["raw_pipeline_vs_bare_faust"] == out["pipeline_vs_bare_faust"] == 5500 / 7000
    assert out["raw_pipeline_vs_stock_faust"] == out["raw_pipeline_vs_bare_faust"]
    assert out["raw_pipeline_vs_own_transport"] == 0.5
    assert out["bare_faust_messages_per_s"] == out["bare_faust_stock_messages_per_s"] == 7000
    assert out["bare_faust_own_transport_messages_per_s"] == 11000
    assert set(out) == {
        "raw_pipeline_vs_bare_faust",
        "pipeline_vs_bare_faust",
        "raw_pipeline_vs_stock_faust",
        "raw_pipeline_vs_own_transport",
        "raw_pipeline_vs_bare_quix",
        "pipeline_vehicles_per_s",
        "bare_faust_messages_per_s",
        "bare_faust_stock_messages_per_s",
        "bare_faust_own_transport_messages_per_s",
        "bare_quix_messages_per_s",
        "p99_produce_to_verdict_ms_at_50pct",
        "p99_weigh_to_verdict_ms",
        "p50_weigh_to_verdict_ms",
    }


def test_the_case_sink_adds_its_rate_the_bare_copy_and_the_ratio():
    info = {
        "cases_rows_per_s": 30000.0,
        "cases_bare_copy_rows_per_s": 50000.0,
        "cases_vs_copy": 0.6,
        "cases_vs_copy_rounds": [0.58, 0.6, 0.63],
    }
    raw = {"benchmarks": [{"name": "test_case_store_vs_bare_copy", "extra_info": info}]}
    assert summarise(raw) == {
        "cases_rows_per_s": 30000.0,
        "cases_bare_copy_rows_per_s": 50000.0,
        "cases_vs_copy": 0.6,
    }
