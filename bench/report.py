"""``bench/report.md`` and its plots (PNG, matplotlib) from the saved pytest-benchmark runs and
``bench/summary.json``: throughput per stage, latency percentiles, the peers, scale-out."""

from __future__ import annotations

import datetime as dt
import os
import platform
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402 - after choosing the file-only backend

FIG = (7.0, 3.6)


def _bar(path: Path, labels: list[str], values: list[float], title: str, unit: str, log=False):
    fig, ax = plt.subplots(figsize=FIG)
    bars = ax.barh(labels, values, color="#4c72b0")
    ax.bar_label(bars, labels=[f"{v:,.0f}" for v in values], padding=3, fontsize=8)
    ax.set_xlabel(unit)
    fig.suptitle(title, fontsize=11)  # over the whole figure: long labels push the axes right
    if log:
        ax.set_xscale("log")
    ax.invert_yaxis()
    ax.margins(x=0.2)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _latency(path: Path, series: dict[str, dict[str, dict[str, float]]]) -> None:
    fig, ax = plt.subplots(figsize=FIG)
    for name, by_fraction in series.items():
        fractions = sorted(by_fraction, key=float)
        for q, style in (("p50", "-o"), ("p99", "--s")):
            ax.plot(
                [float(f) * 100 for f in fractions],
                [by_fraction[f][q] for f in fractions],
                style,
                label=f"{name} {q}",
            )
    ax.axhline(250, color="grey", lw=0.8, ls=":", label="250 ms target (p99 at 50 %)")
    ax.set_yscale("log")
    ax.set_xlabel("load, % of the measured maximum rate")
    ax.set_ylabel("produce → verdict in Redis, ms")
    ax.set_title("Latency")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def meets(value: float, target: tuple[str, float]) -> bool:
    op, bound = target
    return {">=": value >= bound, ">": value > bound, "<=": value <= bound}[op]


def judged(summary: dict, targets: dict) -> list[tuple[str, float, str, bool | None]]:
    """(figure, value, target, met) of the public figures; ``met`` None without a target."""
    out = []
    for key, value in sorted(summary.items()):
        if not key.startswith("_"):
            t = targets.get(key)
            out.append(
                (key, value, f"{t[0]} {t[1]:g}" if t else "", meets(value, t) if t else None)
            )
    return out


def _fmt(value: float) -> str:
    return f"{value:,.3g}" if abs(value) < 100 else f"{value:,.0f}"


def write_report(
    results: dict, summary: dict, targets: dict, out_dir: Path, previous: str | None = None
) -> None:
    """Write ``report.md`` and ``report-*.png`` into ``out_dir``. With ``previous`` (the report
    before a run of one part), its sections this run has no results for are kept."""
    bench: dict[str, Any] = {
        name: b.get("extra_info", {}) for name, b in results.get("benchmarks", {}).items()
    }
    cpu = results.get("machine_info", {}).get("cpu", {}).get("brand_raw", "unknown CPU")
    lines = [
        "# zhichao benchmarks",
        "",
        f"Machine: {os.cpu_count()} cores, {cpu}, Python {platform.python_version()}; "
        f"written {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC by `make bench`.",
        "Absolute rates are for this machine and move with its load; **ratios measured in the "
        "same run are the headline.** The broker (Tansu), Redis and the worker share these cores.",
        "",
        "## Summary (`bench/summary.json`)",
        "",
        "| figure | value | target |",
        "|---|---|---|",
    ]
    for key, value, target, met in judged(summary, targets):
        mark = "" if met is None else f"{target} {'✅' if met else '❌ missed'}"
        lines.append(f"| `{key}` | {_fmt(value)} | {mark} |")

    pipe = bench.get("test_pipeline_vs_bare_faust_and_quix")
    pipe = _current_names(pipe) if pipe else None
    gate = bench.get("test_batched_gateway_vs_quix")
    if pipe or gate:
        labels, values = [], []
        if pipe:
            labels += [
                "bare Faust as shipped (raw topics)",
                "bare Faust, zhichao transport (raw topics)",
                "bare Quix (raw topics)",
                "zhichao raw pipeline",
            ]
            values += [
                pipe["bare_faust_messages_per_s"],
                pipe["bare_faust_own_transport_messages_per_s"],
                pipe["bare_quix_messages_per_s"],
                pipe["pipeline_messages_per_s"],
            ]
        if gate:
            labels += [
                "bare Faust, zhichao transport (1 vehicle/message)",
                "bare Quix (1 vehicle/message)",
                "zhichao batched gateway",
            ]
            values += [
                gate["faust_bare_vehicle_messages_per_s"],
                gate["quix_bare_vehicle_messages_per_s"],
                gate["batched_vehicles_per_s"],
            ]
        _bar(
            out_dir / "report-peers.png",
            labels,
            values,
            "Same broker, same run: messages (vehicles) per second",
            "per second (log)",
            log=True,
        )
        lines += [
            "",
            "## Against the peers",
            "",
            "![peers](report-peers.png)",
            "",
            "Bare loops only count messages; zhichao decides every vehicle (axle kernel, site "
            "join, fusion, verdict kernel, Redis, Kafka). The raw pipeline's rate counts its "
            "input messages (a passage and its camera reads, "
            f"{pipe['messages_per_vehicle']:.2f} per vehicle). The headline, "
            f"`raw_pipeline_vs_bare_faust` {pipe['raw_pipeline_vs_bare_faust']:.2f}, is against "
            "the bare Faust loop as Faust ships it: how close zhichao comes to a Faust "
            "application that only counts; `raw_pipeline_vs_own_transport` "
            f"{pipe['raw_pipeline_vs_own_transport']:.2f} is against the same loop on "
            "zhichao's own transport (`streams/transport.py`), which speeds up a bare loop "
            "too, so it leaves the pipeline's own work "
            "([docs/performance.md](../docs/performance.md) explains the two)."
            + _pairs_sentence(
                pipe.get("raw_pipeline_vs_bare_faust_pairs"),
                pipe.get("raw_pipeline_vs_own_transport_pairs"),
            )
            if pipe
            else "",
        ]
    stages = {
        "verdict kernel": summary.get("verdicts_vehicles_per_s"),
        "replay (all kernels, no broker)": summary.get("replay_vehicles_per_s"),
        "raw pipeline, 1 worker": summary.get("pipeline_vehicles_per_s"),
        "batched gateway, 1 worker": summary.get("batched_vehicles_per_s"),
    }
    stages = {k: v for k, v in stages.items() if v}
    if stages:
        _bar(
            out_dir / "report-stages.png",
            list(stages),
            list(stages.values()),
            "Vehicles per second by stage",
            "vehicles/s (log)",
            log=True,
        )
        lines += ["", "## Throughput per stage", "", "![stages](report-stages.png)"]
    series = {}
    if pipe:
        series["raw pipeline"] = pipe["produce_to_verdict_ms"]
    if gate:
        series["batched gateway"] = gate["batched_latency_ms"]
    if series:
        _latency(out_dir / "report-latency.png", series)
        lines += ["", "## Latency", "", "![latency](report-latency.png)", ""]
        lines += ["| mode | load | p50 ms | p95 ms | p99 ms |", "|---|---|---|---|---|"]
        for name, by_fraction in series.items():
            for f in sorted(by_fraction, key=float):
                q = by_fraction[f]
                cells = " | ".join(f"{q[k]:.0f}" for k in ("p50", "p95", "p99"))
                lines.append(f"| {name} | {float(f):.0%} | {cells} |")
    paced = (pipe or {}).get("paced")
    if paced:
        lines += [
            "",
            "What bounds the raw pipeline's latency from below, measured at the same moment "
            "(each load on a fresh broker and Redis; `bench/floor.py`, `bench/broker.py`): the "
            "broker's own delivery of the same messages to a bare consumer at the tail, and the "
            "decision floor — event time a weighing must wait for its plate reads and for them to "
            "be final (cameras up to 20 m past the sensors, trucks at walking pace in toll "
            "queues, the 2 s publication slack), divided by the speedup at which the paced "
            "traffic replays the city. *Beyond floor* is each passage's latency less its own "
            "floor.",
            "",
            "| load | vehicles/s | speedup | produce→verdict p50 / p99 | broker alone p50 / p99 "
            "| floor p50 / p99 | beyond floor p50 / p99 |",
            "|---|---|---|---|---|---|---|",
        ]
        for f in sorted(paced, key=float):
            p = paced[f]
            cells = " | ".join(
                f"{p[k]['p50']:.0f} / {p[k]['p99']:.0f} ms"
                for k in ("verdict_ms", "broker_ms", "floor_ms", "beyond_floor_ms")
            )
            lines.append(
                f"| {float(f):.0%} | {p['vehicles_per_s']:,.0f} | {p['speedup']:,.0f} × | {cells} |"
            )
    scale = bench.get("test_scale_out_one_and_two_workers")
    if scale:
        _bar(
            out_dir / "report-scale.png",
            ["1 worker", "2 workers"],
            [scale["vehicles_per_s_1_workers"], scale["vehicles_per_s_2_workers"]],
            "Scale-out, raw pipeline (same topics)",
            "vehicles/s",
        )
        lines += [
            "",
            "## Scale-out",
            "",
            "![scale](report-scale.png)",
            "",
            f"Two workers reach {scale['two_vs_one_worker']:.2f}× one worker. On a 2-core "
            "machine the second worker competes with the broker, Redis and the first worker "
            "for the same two cores, and the run includes the rebalance when it joins; on a "
            "cluster each worker has its own cores and partitions.",
        ]
    state = bench.get("test_worker_rss_with_a_million_plates")
    if state:
        lines += [
            "",
            "## Memory with a million plates",
            "",
            f"{state['plates']:,} plates on the 黑名单 and with sightings: worker peak RSS "
            f"{state['worker_rss_1m_plates_mib']:,.0f} MiB (the same run without them: "
            f"{state['worker_rss_no_plates_mib']:,.0f} MiB); Redis holds the plates in "
            f"{state['redis_used_1m_plates_mib']:,.0f} MiB. Per-plate state lives in Redis, not "
            "in the worker: the plates add "
            f"{state['worker_rss_1m_plates_mib'] - state['worker_rss_no_plates_mib']:+,.0f} MiB "
            "to the worker's peak (not broken down further).",
        ]
    cases = bench.get("test_case_store_vs_bare_copy")
    if cases:
        lines += [
            "",
            "## Store of record",
            "",
            f"`CaseStore.store_verdicts` wrote {cases['cases_rows_per_s']:,.0f} verdict rows/s "
            f"into PostgreSQL in batches of {cases['batch']:,} (one transaction each: `COPY` "
            "into a temporary table, `INSERT … ON CONFLICT DO NOTHING` into `weighings`, a case "
            "and its first event for each enforceable over-limit one), "
            f"`cases_vs_copy` {cases['cases_vs_copy']:.3f} of a bare `COPY` of the same "
            f"{cases['rows']:,} rows into `weighings` "
            f"({cases['cases_bare_copy_rows_per_s']:,.0f} rows/s), measured in turn on one "
            "embedded server (`fsync=off`), each into a fresh database; "
            f"{cases['cases_opened']:,} cases opened. The city's over-limit and warning verdicts "
            "are repeated under fresh passage ids to make that many rows. The median of "
            f"{cases['rounds']} rounds, whose ratios were "
            + ", ".join(f"{r:.2f}" for r in cases["cases_vs_copy_rounds"])
            + ".",
        ]
    flood = bench.get("test_dead_letters_vs_bare_faust")
    if flood:
        lines += [
            "",
            "## A flood of malformed input",
            "",
            f"{flood['malformed_messages']:,} malformed messages of every kind "
            "(`sim/malformed.py`: truncated, random bytes, unknown schema ids, wrong types, "
            "bad samples, unknown devices …; one in a thousand carries megabytes of samples) "
            "and nothing else on the input topics: one worker turned them into dead letters at "
            f"{flood['dead_letters_per_s']:,.0f} messages/s, from holding its partitions to the "
            "last dead letter in the broker; the bare Faust loop as shipped counted the same "
            f"messages at {flood['dead_letters_bare_faust_messages_per_s']:,.0f} messages/s: "
            f"`dead_letters_vs_bare_faust` {flood['dead_letters_vs_bare_faust']:.2f}. Every "
            "dead letter is a decode (or a check) that failed, its reason, and a produce to "
            "`dead.letters`, acknowledged once the broker has it. The median of pairs on fresh "
            "stacks, whose ratios were "
            + ", ".join(f"{r:.2f}" for r in flood["dead_letters_vs_bare_faust_pairs"])
            + ".",
        ]
    if previous:
        lines = _keeping_sections(lines, previous)
    (out_dir / "report.md").write_text("\n".join(lines) + "\n", encoding="utf-8")


def _sections(lines: list[str]) -> tuple[list[str], dict[str, list[str]]]:
    """The lines before the first ``## `` heading, and each section by its heading."""
    head: list[str] = []
    sections: dict[str, list[str]] = {}
    current = head
    for line in lines:
        if line.startswith("## "):
            current = sections.setdefault(line, [])
        current.append(line)
    return head, sections


def _keeping_sections(lines: list[str], previous: str) -> list[str]:
    """``lines`` with the sections of ``previous`` they lack, where they stood: a run of one
    part leaves what the report says of the others (their results are not saved in git)."""
    head, new = _sections(lines)
    _, old = _sections(previous.splitlines())
    bodies = [new.pop(heading, body) for heading, body in old.items()] + list(new.values())
    out = _trimmed(head)
    for body in bodies:
        out += ["", *_trimmed(body)]
    return out


def _trimmed(lines: list[str]) -> list[str]:
    while lines and not lines[-1]:
        lines = lines[:-1]
    return lines


def _current_names(info: dict[str, Any]) -> dict[str, Any]:
    """A pipeline run's figures under today's names: runs saved before the headline was the
    loop as Faust ships it called the loop on the worker's transport ``bare_faust``."""
    if "raw_pipeline_vs_own_transport" in info:
        return info
    return info | {
        "bare_faust_messages_per_s": info["bare_faust_stock_messages_per_s"],
        "bare_faust_own_transport_messages_per_s": info["bare_faust_messages_per_s"],
        "raw_pipeline_vs_bare_faust": info["raw_pipeline_vs_stock_faust"],
        "raw_pipeline_vs_own_transport": info["raw_pipeline_vs_bare_faust"],
        "raw_pipeline_vs_bare_faust_pairs": None,
        "raw_pipeline_vs_own_transport_pairs": None,
    }


def _pairs_sentence(stock: list[float] | None, own: list[float] | None) -> str:
    """The spread behind the headline ratio: every pair's, the median pair's figures shown."""
    if not stock or len(stock) < 2:
        return ""
    listed = ", ".join(f"{r:.2f}" for r in stock)
    beside = f" ({', '.join(f'{r:.2f}' for r in own)} on the own transport)" if own else ""
    return (
        f" Each pair of bare loops and pipeline ran on a fresh stack; the ratios of the "
        f"{len(stock)} pairs were {listed} against Faust as shipped{beside}, and the figures "
        "above are the median pair's by the headline (one pair swings by ±10 % and more on "
        "this machine)."
    )
