"""The ``zhichao`` command: simulate, gateway-sim, worker, replay, verify, blacklist, token, up,
demo, db, cases. Settings, the registry among them, come from ``schemas.settings``
(``ZHICHAO_*``)."""

from __future__ import annotations

import datetime as dt
import gc
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import click

from schemas.registry import CITY_DIR, EXAMPLE_CITY, Registry, RegistryError, load_registry
from schemas.settings import Settings
from zhichao import records_cli

city_registry = click.option(
    "--registry",
    "registry_path",
    default="example-city",
    show_default=True,
    help="registry name in schemas/cities or a YAML path",
)


def _registry_path(city: str) -> Path:
    path = Path(city)
    if path.suffix in (".yaml", ".yml"):
        return path
    candidate = CITY_DIR / f"{city}.yaml"
    if not candidate.exists():
        known = sorted(p.stem for p in CITY_DIR.glob("*.yaml"))
        raise click.BadParameter(f"no city {city!r}: give a .yaml path or one of {known}")
    return candidate


def _settings(overrides: dict[str, object] | None = None) -> Settings:
    """Settings from ``ZHICHAO_*`` and ``overrides``; a bad value is an error message, not a
    traceback."""
    try:
        return Settings.load(overrides)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from exc


def _settings_registry(settings: Settings) -> Registry:
    """The registry a worker with these settings loads (``ZHICHAO_REGISTRY_PATH``)."""
    try:
        return load_registry(settings.registry_path)
    except RegistryError as exc:
        raise click.ClickException(str(exc)) from exc


def _unknown_units(units: set[str], registry: Registry) -> str:
    return (
        f"unknown unit(s) {', '.join(sorted(units))} in the registry {registry.path} "
        f"(ZHICHAO_REGISTRY_PATH); its units: {', '.join(registry.units)}"
    )


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """治超 zhichao — real-time non-site overload enforcement on Kafka."""


def _run_simulation(
    city: str,
    vehicles: int,
    out: Path,
    seed: int,
    fmt: str,
    cost_class: str,
    overloaded_share: float,
    quiet: bool,
    start: dt.datetime,
    **settings: Any,
):
    """Simulate into ``out`` from ``start`` (``settings``: more of ``SimConfig``); returns
    (summary, traffic)."""
    from tqdm import tqdm

    from sim.config import SimConfig
    from sim.output import write_traffic
    from sim.summary import summarise
    from sim.traffic import CitySimulator

    try:
        registry = load_registry(_registry_path(city))
    except RegistryError as exc:
        raise click.ClickException(str(exc)) from exc
    config = SimConfig(
        seed=seed,
        vehicles=vehicles,
        cost323_class=cost_class,
        overloaded_share=overloaded_share,
        start=start,
        **settings,
    )
    try:
        simulator = CitySimulator(config, registry)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from exc
    started = time.perf_counter()
    progress = tqdm(
        range(vehicles), desc="simulating", unit="veh", disable=quiet or None, file=sys.stderr
    )
    traffic = simulator.run(progress)
    summary = summarise(traffic)
    write_traffic(
        traffic,
        out,
        fmt,
        manifest={
            "seed": seed,
            "city": str(registry.path),
            "cost323_class": cost_class,
            "start": start.isoformat(),
            "summary": summary,
        },
    )
    summary["seconds"] = round(time.perf_counter() - started, 2)
    summary["out"] = str(out)
    return summary, traffic


@main.command()
@click.option(
    "--city",
    default="example-city",
    show_default=True,
    help="registry name in schemas/cities or a YAML path",
)
@click.option("--vehicles", default=2000, show_default=True, type=click.IntRange(0))
@click.option(
    "--days",
    default=None,
    type=click.IntRange(1, 800),
    help="instead of --vehicles: this many days at --per-day, with the rhythm of day and week "
    "and regular trucks among them (repeat offenders), e.g. a quarter for zhichao report",
)
@click.option("--per-day", default=300, show_default=True, type=click.IntRange(1))
@click.option("--out", "out", required=True, type=click.Path(file_okay=False, path_type=Path))
@click.option("--seed", default=20261122, show_default=True, type=int)
@click.option(
    "--format",
    "fmt",
    default="avro",
    show_default=True,
    type=click.Choice(["avro", "jsonl", "both"]),
)
@click.option(
    "--cost-class",
    default="B+",
    show_default=True,
    type=click.Choice(["A", "B+", "B", "C", "D+", "D"]),
    help="COST 323 accuracy class of the simulated raw signals",
)
@click.option(
    "--overloaded-share",
    default=0.08,
    show_default=True,
    type=click.FloatRange(0, 1),
    help="share of heavy trucks over their limit",
)
@click.option("--quiet", is_flag=True, help="no progress bar")
@click.option("--to-kafka", "to_kafka", default=None, help="also publish to kafka://host:port")
@click.option(
    "--speedup",
    default=10.0,
    show_default=True,
    help="with --to-kafka: event time runs this many times faster (0 = no pacing)",
)
@click.option("--partitions", default=6, show_default=True, help="partitions of new topics")
@click.option(
    "--start",
    "start_text",
    default=None,
    help="first event time, ISO 8601 (China time if no offset); default: now with --to-kafka "
    "(a worker refuses inputs too far from its clock), else the archive day 2026-11-20 08:00",
)
def simulate(
    city: str,
    vehicles: int,
    days: int | None,
    per_day: int,
    out: Path,
    seed: int,
    fmt: str,
    cost_class: str,
    overloaded_share: float,
    quiet: bool,
    to_kafka: str | None,
    speedup: float,
    partitions: int,
    start_text: str | None,
) -> None:
    """Simulate a city's traffic into files (inputs, truth.jsonl, manifest.json), and
    optionally publish it to Kafka paced in event time."""
    from sim.config import days_of_traffic

    start = _start_of(start_text, live=bool(to_kafka))
    given = click.get_current_context().get_parameter_source
    if days and given("vehicles") is click.core.ParameterSource.COMMANDLINE:
        raise click.UsageError("give --vehicles or --days (with --per-day), not both")
    if not days and given("per_day") is click.core.ParameterSource.COMMANDLINE:
        raise click.UsageError("--per-day goes with --days")
    spread = days_of_traffic(days, per_day) if days else {}
    vehicles = spread.pop("vehicles", vehicles)
    summary, traffic = _run_simulation(
        city, vehicles, out, seed, fmt, cost_class, overloaded_share, quiet, start, **spread
    )
    if to_kafka:
        import asyncio

        from sim.publish import publish

        summary["published"] = asyncio.run(
            publish(traffic, bootstrap_of(to_kafka), partitions, speedup)
        )
    click.echo(json.dumps(summary, ensure_ascii=False))


def _start_of(text: str | None, live: bool) -> dt.datetime:
    """The simulation's first event time: ``text`` (ISO 8601, China time without an offset),
    else now for a live feed, else the archive day (reproducible files)."""
    from schemas.registry import CHINA
    from sim.config import ARCHIVE_START

    if text is None:
        return dt.datetime.now(CHINA).replace(microsecond=0) if live else ARCHIVE_START
    try:
        start = dt.datetime.fromisoformat(text)
    except ValueError as exc:
        raise click.BadParameter(f"{text!r} is not an ISO 8601 time", param_hint="--start") from exc
    return start if start.tzinfo is not None else start.replace(tzinfo=CHINA)


@main.command("gateway-sim")
@click.option("--broker", "broker_url", default=None, help="kafka://host:port (default: settings)")
@click.option("--vehicles", default=100_000, show_default=True, type=click.IntRange(1))
@click.option(
    "--rate",
    default=10_000.0,
    show_default=True,
    help="vehicles per second over all gateways; 0 sends as fast as the broker takes them",
)
@click.option("--per-batch", default=250, show_default=True, type=click.IntRange(1, 100_000))
@click.option("--partitions", default=6, show_default=True, help="partitions of new topics")
@click.option("--seed", default=1, show_default=True, type=int)
def gateway_sim(
    broker_url: str | None,
    vehicles: int,
    rate: float,
    per_batch: int,
    partitions: int,
    seed: int,
) -> None:
    """Site gateways of the batched mode: simulated trucks of the registry's city in
    zhichao.VehicleBatch messages on wim.batches, timed now, paced at --rate."""
    import asyncio

    from schemas import topics as T
    from sim.config import SimConfig
    from sim.gateway import batches, pool_of, publish
    from sim.traffic import CitySimulator

    settings = _settings({"broker_url": broker_url})
    registry = _settings_registry(settings)
    pool = pool_of(CitySimulator(SimConfig(vehicles=3000, seed=seed), registry).run().truth, seed)
    made = list(
        batches(
            pool,
            registry,
            vehicles,
            per_batch,
            int(time.time() * 1e6),
            rate or 100_000.0,
            seed=seed,
            prefix=f"sim{seed}",
        )
    )
    bootstrap = bootstrap_of(settings.broker_url)
    asyncio.run(T.ensure_topics(bootstrap, partitions))
    started = time.monotonic()
    asyncio.run(
        publish(
            bootstrap,
            T.WIM_BATCHES,
            [(b.key, b.value) for b in made],
            rate_per_s=rate,
            weights=[b.vehicles for b in made],
        )
    )
    seconds = time.monotonic() - started
    click.echo(
        json.dumps({"batches": len(made), "vehicles": vehicles, "seconds": round(seconds, 2)})
    )


def bootstrap_of(broker_url: str) -> str:
    """kafka://h1:9092;h2:9092 -> h1:9092,h2:9092 (what aiokafka takes)."""
    return ",".join(part.removeprefix("kafka://") for part in broker_url.split(";"))


@main.command()
@click.option("--broker", "broker_url", default=None, help="kafka://host:port")
@click.option("--redis", "redis_dsn", default=None, help="redis://host:port/db")
@click.option("--partitions", type=int, default=None, help="partitions of new topics")
@click.option("--registry", "registry_path", type=click.Path(path_type=Path), default=None)
@click.option("--loglevel", default="info", show_default=True)
def worker(
    broker_url: str | None,
    redis_dsn: str | None,
    partitions: int | None,
    registry_path: Path | None,
    loglevel: str,
) -> None:
    """Run one stream worker (Faust) against Kafka and Redis; settings also from ZHICHAO_*."""
    import asyncio

    from schemas.topics import ensure_topics
    from streams.app import create_app
    from streams.kafka_security import aiokafka_options

    overrides = {
        "broker_url": broker_url,
        "redis_dsn": redis_dsn,
        "partitions": partitions,
        "registry_path": registry_path,
    }
    settings = _settings(overrides)
    security = aiokafka_options(settings)
    asyncio.run(
        ensure_topics(bootstrap_of(settings.broker_url), settings.partitions, security=security)
    )
    app = create_app(settings)
    # Numba, Faust and the registry leave ~260,000 long-lived objects behind: every full
    # collection would walk them (~95 ms, about once a second under load, collecting nothing),
    # a pause every in-flight vehicle waits out. Moved out of the collector's sight once.
    gc.collect()
    gc.freeze()
    # no Faust web server: it would bind 0.0.0.0:6066 and collide with a second worker
    sys.argv = ["zhichao-worker", "worker", "--loglevel", loglevel, "--without-web"]
    app.main()


@main.command("calibrate-plates")
@click.option("--city", "registry_path", default="example-city", show_default=True)
@click.option("--seeds", default="101-108", show_default=True, help="simulator seeds: 1-8 or 1,5,9")
@click.option("--vehicles", default=5000, show_default=True, type=click.IntRange(1))
@click.option(
    "--outcomes",
    "outcome_files",
    multiple=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="reviewed outcomes (JSON lines: source, kind, score, right), added to the simulated",
)
@click.option("--no-simulation", is_flag=True, help="fit on the --outcomes alone")
@click.option(
    "--out",
    default=None,
    type=click.Path(dir_okay=False, path_type=Path),
    help="default: schemas/policy/plate-calibration.yaml",
)
def calibrate_plates(
    registry_path: str,
    seeds: str,
    vehicles: int,
    outcome_files: tuple[Path, ...],
    no_simulation: bool,
    out: Path | None,
) -> None:
    """Fit the map from plate fusion score to the probability that the plate is right."""
    from schemas.plate_calibration import DEFAULT_PATH
    from zhichao import calibrate

    try:
        seed_list = _seed_list(seeds)
        outcomes = [o for f in outcome_files for o in calibrate.read_outcomes(f)]
        registry = load_registry(_registry_path(registry_path))
    except (ValueError, RegistryError) as exc:
        raise click.ClickException(str(exc)) from exc
    fitted_on: dict[str, object] = {"reviewed_outcomes": len(outcomes)}
    if not no_simulation:
        outcomes += calibrate.camera_outcomes(registry, seed_list, vehicles)
        outcomes += calibrate.gateway_outcomes(registry, seed_list, vehicles)
        fitted_on.update(simulator_seeds=seed_list, vehicles_per_seed=vehicles)
    if not outcomes:
        raise click.ClickException("no outcomes to fit on")
    maps = calibrate.fit(outcomes)
    target = out or DEFAULT_PATH
    calibrate.write_calibration(maps, target, fitted_on)
    for source, kinds in maps.items():
        for kind, m in kinds.items():
            click.echo(
                f"{source}/{kind}: {m['outcomes']} outcomes, {m['right']} right, "
                f"{len(m['score'])} knots"
            )
    click.echo(f"wrote {target}")


def _seed_list(text: str) -> list[int]:
    """``1-8`` or ``1,5,9`` as a list of seeds."""
    try:
        if "-" in text:
            lo, hi = (int(x) for x in text.split("-", 1))
            return list(range(lo, hi + 1))
        return [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise ValueError(f"--seeds: {text!r} is not a range (1-8) or a list (1,5,9)") from None


@main.command()
@click.option(
    "--registry",
    "registry_path",
    default="example-city",
    show_default=True,
    help="registry name in schemas/cities or a YAML path",
)
@click.option(
    "--out",
    "out",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="verdicts as JSON lines",
)
@click.option(
    "--truth",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="simulator ground truth: print an accuracy report",
)
@click.option(
    "--policy",
    "policy_name",
    default=None,
    help="policy name or YAML path (default: the registry's)",
)
@click.option("--json", "as_json", is_flag=True, help="print the report as one JSON line")
@click.option(
    "--to-db",
    is_flag=True,
    help="also store the verdicts in the store of record (ZHICHAO_PG_DSN), as `zhichao db load`",
)
@click.argument(
    "files", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path)
)
def replay(
    registry_path: str,
    out: Path,
    truth: Path | None,
    policy_name: str | None,
    as_json: bool,
    to_db: bool,
    files: tuple[Path, ...],
) -> None:
    """Decide archived inputs (Avro or JSON lines) exactly as the agents do; write verdicts."""
    from schemas.policy import PolicyError, load_policy
    from streams.stages import join_params
    from zhichao.replay import ReplayError, replay_files

    join = join_params(_settings())  # ZHICHAO_JOIN_*: the same join as the worker's
    dsn = records_cli.checked_store() if to_db else None  # before the work: no store, no replay
    try:
        registry = load_registry(_registry_path(registry_path))
        policy = load_policy(policy_name or registry.policy)
        report = replay_files(registry, list(files), out, truth=truth, policy=policy, join=join)
    except (RegistryError, PolicyError, ReplayError) as exc:
        raise click.ClickException(str(exc)) from exc
    stored = records_cli.load_files(dsn, [out]) if dsn else None
    if as_json:
        click.echo(
            json.dumps(report.as_dict() | {"stored": stored}, ensure_ascii=False, default=str)
        )
    else:
        click.echo(report.render())
        if stored is not None:
            click.echo(
                f"store of record: {stored['sightings']:,} new sightings, "
                f"{stored['weighings']:,} new weighings, {stored['cases']:,} cases opened"
            )


@main.command()
@click.argument("plate")
@click.option("--from", "first", default=None, help="first day, YYYY-MM-DD (China time)")
@click.option("--to", "last", default=None, help="last day, YYYY-MM-DD, included")
@city_registry
@click.option("--json", "as_json", is_flag=True, help="one JSON line per sighting")
def track(
    plate: str, first: str | None, last: str | None, registry_path: str, as_json: bool
) -> None:
    """A plate's trajectory (车辆轨迹) from the store of record (ZHICHAO_PG_DSN): every sighting
    at a weigh site in time order, with its weighing and case."""
    import psycopg

    from sinks.records.track import TrackError, day_bounds
    from sinks.records.track import track as track_of

    try:
        start, end = day_bounds(first, last)
        registry = load_registry(_registry_path(registry_path))
        with psycopg.connect(records_cli.checked_store()) as conn:
            found = track_of(conn, registry, plate, start, end)
    except (TrackError, RegistryError, psycopg.Error) as exc:
        raise click.ClickException(str(exc)) from exc
    if as_json:
        for row in found:
            click.echo(json.dumps(row, ensure_ascii=False, default=str))
        return
    if not found:
        click.echo(f"{plate}：记录库中没有过车记录")
        return
    from schemas.cases import load_case_rules

    states = load_case_rules().states
    verdicts = {"ok": "正常", "warning": "预警", "overlimit": "超限"}
    directions = {"up": "上行", "down": "下行"}
    for r in found:
        case = f"案件 {r['case_id']}（{states[r['case_state']]}）" if r["case_id"] else ""
        over = r["verdict"] == "overlimit" and r["overload_pct"] is not None
        excess = f" 超限率 {r['overload_pct']:.2f}%" if over else ""
        click.echo(
            f"{r['seen_at'][:16].replace('T', ' ')}  {r['site_name']}（{r['site_id']}）"
            f" {directions.get(r['direction'], r['direction'])}  {r['vehicle_class']}"
            f" {r['gvw_kg'] / 1000:.2f} 吨 {verdicts[r['verdict']]}{excess}  {case}".rstrip()
        )


@main.command()
@click.option("--quarter", default=None, help="a quarter, e.g. 2026Q1")
@click.option("--month", default=None, help="a month, e.g. 2026-03")
@click.option("--from", "first", default=None, help="first day, YYYY-MM-DD (with --to)")
@click.option("--to", "last", default=None, help="last day, YYYY-MM-DD, included")
@click.option("--site", default=None, help="one site's report (default: the city's)")
@click.option(
    "--repeat-min",
    default=2,
    show_default=True,
    type=click.IntRange(1),
    help="over-limit times of a repeat offender",
)
@city_registry
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True)
def report(
    quarter: str | None,
    month: str | None,
    first: str | None,
    last: str | None,
    site: str | None,
    repeat_min: int,
    registry_path: str,
    out: Path,
) -> None:
    """The 通报 of a quarter, a month or a range of days from the store of record
    (ZHICHAO_PG_DSN): report.html, report.pdf, report.xlsx and a chart per table in OUT."""
    import psycopg

    from sinks.records.analysis import Period, PeriodError, build_report
    from sinks.records.kpis import TargetsError
    from sinks.records.sources import SourceRulesError
    from zhichao.report import write_report

    given = [x for x in (quarter, month, first or last) if x]
    if len(given) != 1 or bool(first) != bool(last):
        raise click.UsageError("give one of --quarter, --month, or --from with --to")
    try:
        period = (
            Period.quarter(quarter)
            if quarter
            else Period.month(month)
            if month
            else Period.days(first, last)
        )
        registry = load_registry(_registry_path(registry_path))
    except (PeriodError, RegistryError) as exc:
        raise click.ClickException(str(exc)) from exc
    if site is not None and site not in registry.sites:
        raise click.ClickException(f"站点 {site!r} 不在登记册中（{', '.join(registry.sites)}）")
    dsn = records_cli.checked_store()
    try:
        with psycopg.connect(dsn) as conn:
            built = build_report(conn, registry, period, site, repeat_min)
        files = write_report(built, out)
    except (psycopg.Error, SourceRulesError, TargetsError, OSError) as exc:
        raise click.ClickException(str(exc)) from exc
    for path in (files.html, files.pdf, files.xlsx):
        click.echo(str(path))


@main.command()
@click.option("--site", "sites", multiple=True, help="check this site's chain (default: all)")
@click.option(
    "--file",
    "files",
    multiple=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="check an exported chain (one record per line) instead of Redis",
)
@click.option(
    "--export",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="also write each site's chain from Redis to DIR/<site>.evidence",
)
def verify(sites: tuple[str, ...], files: tuple[Path, ...], export: Path | None) -> None:
    """Check evidence chains (证据链): names the first record altered, removed or reordered.
    The key is ZHICHAO_EVIDENCE_KEY; Redis is ZHICHAO_REDIS_DSN."""
    import redis as redis_sync

    from sinks.evidence import HEADS_KEY, chain_lines, verify_chain

    settings = _settings()
    if not settings.evidence_key:
        raise click.ClickException(
            "set ZHICHAO_EVIDENCE_KEY to the key the chains were sealed with"
        )
    key = settings.evidence_key.encode()
    chains: dict[str, object] = {}
    if files:
        chains = {str(f): f.read_bytes().splitlines() for f in files}
    else:
        client = redis_sync.Redis.from_url(settings.redis_dsn)
        names = sites or sorted(s.decode() for s in client.hkeys(HEADS_KEY))
        for site in names:
            lines = list(chain_lines(client, site))
            if export:
                export.mkdir(parents=True, exist_ok=True)
                (export / f"{site}.evidence").write_bytes(b"".join(x + b"\n" for x in lines))
            chains[site] = lines
    bad = 0
    for name, lines in chains.items():
        n, problem = verify_chain(lines, key)
        if problem is None:
            click.echo(f"{name}: {n} records, chain intact")
        else:
            bad += 1
            click.echo(
                f"{name}: {n} records verified, then record {problem.index} "
                f"(seq {problem.seq}): {problem.reason} — {problem.message}"
            )
    if not chains:
        click.echo("no evidence chain found")
    if bad:
        sys.exit(1)


@main.group()
def blacklist() -> None:
    """Put plates on the 黑名单 or take them off (published to ``blacklist.updates``)."""


def _publish_blacklist(plate: str, action: str, reason: str, case_ref: str | None) -> None:
    import asyncio
    import getpass
    import time

    from aiokafka import AIOKafkaProducer

    import schemas
    from schemas.topics import BLACKLIST_UPDATES
    from sinks.blacklist import update_problem
    from streams.kafka_security import aiokafka_options

    settings = _settings()
    update = {
        "plate": plate,
        "action": action,
        "reason": reason,
        "case_ref": case_ref,
        "ts_us": int(time.time() * 1e6),
        "source": f"zhichao-cli:{getpass.getuser()}",
    }
    if problem := update_problem(update):
        raise click.UsageError(problem[1])

    async def send() -> None:
        producer = AIOKafkaProducer(
            bootstrap_servers=bootstrap_of(settings.broker_url), **aiokafka_options(settings)
        )
        await producer.start()
        try:
            value = schemas.BLACKLIST_UPDATE.encode_wire(update)
            await producer.send_and_wait(BLACKLIST_UPDATES, value, key=plate.encode())
        finally:
            await producer.stop()

    asyncio.run(send())
    click.echo(f"{action}: sent to {BLACKLIST_UPDATES}")


@blacklist.command("add")
@click.argument("plate")
@click.option("--reason", default="有未处理的超限案件", show_default=True)
@click.option("--case", "case_ref", default=None, help="the case number")
def blacklist_add(plate: str, reason: str, case_ref: str | None) -> None:
    """Put a plate on the 黑名单: its weighings call for an interception, checkpoints alert."""
    _publish_blacklist(plate, "add", reason, case_ref)


@blacklist.command("remove")
@click.argument("plate")
@click.option("--reason", default="案件已处理", show_default=True)
def blacklist_remove(plate: str, reason: str) -> None:
    """Take a plate off the 黑名单 (its case is handled)."""
    _publish_blacklist(plate, "remove", reason, None)


@main.group()
def token() -> None:
    """Access tokens of the officer and dashboard pages (per unit, revocable)."""


def _redis_client(settings: Settings):
    import redis.asyncio as aioredis

    return aioredis.Redis.from_url(settings.redis_dsn)


@token.command("issue")
@click.option(
    "--unit", "unit_id", default=None, help="a unit id of the registry (ZHICHAO_REGISTRY_PATH)"
)
@click.option("--command", "command_centre", is_flag=True, help="a command-centre token")
@click.option(
    "--reviewer", default=None, help="a reviewer's (审核员) token for the desk: their name"
)
@click.option("--label", default="", help="who holds it (shown in the list)")
def token_issue(
    unit_id: str | None, command_centre: bool, reviewer: str | None, label: str
) -> None:
    """Issue a token and print it (it is shown only this once; Redis keeps its SHA-256)."""
    import asyncio

    from sinks.web import access

    if sum((bool(unit_id), command_centre, bool(reviewer))) != 1:
        raise click.UsageError("give one of --unit UNIT, --command or --reviewer NAME")
    role = "unit" if unit_id else "reviewer" if reviewer else "command"
    label = reviewer.strip() if reviewer else label
    settings = _settings()
    registry = _settings_registry(settings)
    if unit_id and unit_id not in registry.units:
        raise click.BadParameter(_unknown_units({unit_id}, registry), param_hint="'--unit'")

    async def run() -> str:
        client = _redis_client(settings)
        try:
            return await access.issue(client, role, unit_id, label)
        finally:
            await client.aclose()

    try:
        click.echo(asyncio.run(run()))
    except ValueError as exc:
        raise click.UsageError(str(exc)) from exc


@token.command("revoke")
@click.argument("value", required=False)
@click.option("--unit", "unit_id", default=None, help="revoke every token of this unit")
def token_revoke(value: str | None, unit_id: str | None) -> None:
    """Revoke a token (or all of a unit's); open pages are logged out within seconds."""
    import asyncio

    from sinks.web import access

    if bool(value) == bool(unit_id):
        raise click.UsageError("give either a TOKEN or --unit UNIT")

    async def run() -> int:
        client = _redis_client(_settings())
        try:
            return await access.revoke(client, value, unit_id)
        finally:
            await client.aclose()

    n = asyncio.run(run())
    click.echo(f"revoked {n} token(s)")
    if not n:
        sys.exit(1)


@token.command("list")
def token_list() -> None:
    """Issued tokens (role, unit, label, when; the tokens themselves are not kept)."""
    import asyncio
    import datetime as dt

    from sinks.web import access

    async def run() -> dict:
        client = _redis_client(_settings())
        try:
            return await access.tokens(client)
        finally:
            await client.aclose()

    for d, r in sorted(asyncio.run(run()).items(), key=lambda kv: kv[1]["issued_us"]):
        when = dt.datetime.fromtimestamp(r["issued_us"] / 1e6).isoformat(timespec="seconds")
        click.echo(f"{d[:12]}  {r['role']:<8} {r['unit_id'] or '-':<10} {r['label']}  {when}")


@main.command()
@click.option(
    "--for",
    "seconds",
    type=float,
    default=None,
    help="stop after this many seconds and print one JSON line of what happened",
)
@click.option("--speedup", default=10.0, show_default=True, help="simulated time x real time")
@click.option("--partitions", default=4, show_default=True)
@click.option(
    "--screenshots",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="write PNGs of the dashboard and an officer page here (after 90 s)",
)
@click.option(
    "--human",
    "human_units",
    multiple=True,
    help="units answered by a person at the officer page (default: the registry's first unit; "
    "the others are simulated)",
)
@click.option(
    "--human-reviewer",
    is_flag=True,
    help="leave the review desk to you (by default a simulated reviewer works part of the queue)",
)
def up(
    seconds: float | None,
    speedup: float,
    partitions: int,
    screenshots: Path | None,
    human_units: tuple[str, ...],
    human_reviewer: bool,
) -> None:
    """The whole stack on this machine: broker, Redis, a worker, and the registry's city
    (ZHICHAO_REGISTRY_PATH, the example city by default) streaming live."""
    import asyncio

    from schemas.topics import ensure_topics
    from streams.embedded import EmbeddedError, embedded_stack, free_port
    from zhichao.up import (
        DEMO_EVENT_AHEAD_S,
        DemoPages,
        issue_demo_tokens,
        login_url,
        run_up,
        start_worker,
        stop_worker,
    )

    def say(text: str) -> None:
        click.echo(text, err=seconds is not None)

    settings = _settings()
    registry = _settings_registry(settings)
    if unknown := set(human_units) - set(registry.units):
        raise click.BadParameter(_unknown_units(unknown, registry), param_hint="'--human'")
    human_units = human_units or tuple(registry.units)[:1]
    if screenshots and not human_units:
        raise click.UsageError("--screenshots shows the page of a --human unit")
    workdir = Path(tempfile.mkdtemp(prefix="zhichao-up-"))
    try:
        with embedded_stack(workdir) as stack:
            say(
                f"治超 zhichao up: broker {stack.bootstrap}, redis {stack.redis_dsn}, "
                f"logs in {workdir}; Ctrl-C stops everything"
            )
            asyncio.run(ensure_topics(stack.bootstrap, partitions))
            metrics_port, web_port = free_port(), free_port()
            worker = start_worker(
                stack,
                partitions,
                workdir / "worker.log",
                metrics_port,
                {
                    "ZHICHAO_MAX_EVENT_AHEAD_S": str(DEMO_EVENT_AHEAD_S),
                    "ZHICHAO_REGISTRY_PATH": str(settings.registry_path),  # the simulated city
                },
                web_port,
            )
            say(f"metrics: http://127.0.0.1:{metrics_port}/metrics")
            tokens = asyncio.run(issue_demo_tokens(stack, registry))
            say(f"指挥中心 dashboard: {login_url(web_port, tokens['command'])}")
            say(f"审核台 review desk: {login_url(web_port, tokens['reviewer'])}")
            for unit_id, unit in registry.units.items():
                who = "你 (you)" if unit_id in human_units else "模拟 (simulated)"
                say(
                    f"执法终端 officer page {unit.name} ({unit_id}, {who}): "
                    f"{login_url(web_port, tokens[unit_id])}"
                )
            pages = DemoPages(
                f"http://127.0.0.1:{web_port}",
                tokens,
                frozenset(human_units),
                screenshots,
                human_reviewer=human_reviewer,
            )
            try:
                result = asyncio.run(
                    run_up(
                        registry,
                        stack,
                        speedup=speedup,
                        seconds=seconds,
                        echo=say,
                        worker=worker,
                        pages=pages,
                    )
                )
            finally:
                stop_worker(worker)
    except (EmbeddedError, TimeoutError) as exc:
        raise click.ClickException(f"{exc} (logs in {workdir})") from exc
    click.echo(json.dumps(result, ensure_ascii=False))


@main.command()
@click.option("--vehicles", default=600, show_default=True, type=click.IntRange(1))
@click.option("--out", "out", type=click.Path(file_okay=False, path_type=Path), default=None)
def demo(vehicles: int, out: Path | None) -> None:
    """Simulate the example city into files and decide every passage as ``zhichao replay``
    does, in this process (no broker or Redis: ``zhichao up`` runs the whole stack)."""
    from sim.config import ARCHIVE_START
    from zhichao.replay import replay_files

    target = out or Path(tempfile.mkdtemp(prefix="zhichao-demo-"))
    click.echo(f"治超 demo: simulating {vehicles} passages of the example city into {target}")
    summary, _ = _run_simulation(
        "example-city", vehicles, target, 20261122, "avro", "B+", 0.08, False, ARCHIVE_START
    )
    click.echo(json.dumps(summary, ensure_ascii=False, indent=2))
    click.echo("deciding every passage with the kernels (the first run compiles them) …")
    registry = load_registry(EXAMPLE_CITY)
    report = replay_files(
        registry,
        sorted(target.glob("*.avro")),
        target / "verdicts.jsonl",
        truth=target / "truth.jsonl",
    )
    click.echo(report.render())
    click.echo(_case_table(target / "verdicts.jsonl", registry))
    click.echo(f"\nverdicts: {target / 'verdicts.jsonl'}")


def _case_table(verdicts_path: Path, registry) -> str:
    """The over-limit verdicts as an officer would scan them (Chinese headers)."""
    rows = [json.loads(line) for line in verdicts_path.read_text(encoding="utf-8").splitlines()]
    over = [v for v in rows if v["verdict"] == "overlimit"]
    over.sort(key=lambda v: (not v["enforceable"], -v["overload_pct"]))
    lines = [
        f"\n超限车辆 over-limit vehicles: {len(over)}, 可处罚 enforceable: "
        f"{sum(v['enforceable'] for v in over)}",
        f"{'车牌':<9}{'车型':<5}{'总重kg':>8}{'限值kg':>8}{'超限率':>7} "
        f"{'罚款':>6} {'可处罚':<4} 站点",
    ]
    for v in over[:12]:
        site = registry.sites.get(v["site_id"])
        why = "" if v["enforceable"] else f"  ({', '.join(v['flags'][:3]) or '在计量误差范围内'})"
        lines.append(
            f"{(v['plate_front'] or '(未识别)'):<10}{v['vehicle_class']:<6}{v['gvw_kg']:>9.0f}"
            f"{v['limit_kg']:>10.0f}{v['overload_pct']:>9.1f}% {v['fine_cny'] or 0:>7} "
            f"{'是' if v['enforceable'] else '否':<5}{site.name if site else v['site_id']}{why}"
        )
    return "\n".join(lines)


main.add_command(records_cli.db)
main.add_command(records_cli.cases)
main.add_command(records_cli.handover)

if __name__ == "__main__":
    main()
