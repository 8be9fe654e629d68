"""Measuring and deciding beside the main thread (``streams.decider``, ``streams.deciding``,
``streams.rounds``): a helper process gives the same verdicts as the main thread and as replay,
a poison record costs only itself, a helper that dies costs speed, never a verdict."""

from __future__ import annotations

import asyncio
import os
import signal
import time

import pytest

from schemas.policy import load_policy
from schemas.registry import EXAMPLE_CITY
from sim.config import SimConfig
from sim.traffic import CitySimulator
from streams import deciding
from streams.decider import Decider
from streams.deciding import EarlyJob, cut_job, decide_round, measure_isolating
from streams.rounds import Rounds
from streams.stages import decide, join_site_reads, measure_passages


@pytest.fixture(scope="module")
def small_city(registry):
    traffic = CitySimulator(SimConfig(vehicles=80, seed=44), registry).run()
    return traffic, load_policy(registry.policy)


def _jobs(measured, reads):
    """One cut group per site, with its reads: replay's join."""
    sites = sorted({m["site_id"] for m in measured})
    return [
        cut_job(
            [m for m in measured if m["site_id"] == s], [r for r in reads if r["site_id"] == s], {}
        )
        for s in sites
    ]


def test_a_helper_measures_and_decides_as_the_main_thread_and_replay(registry, small_city):
    traffic, policy = small_city
    measured, rejected = measure_passages(traffic.passages, registry)
    replayed = {v["passage_id"]: v for v in decide(measured, traffic.reads, registry, policy)}
    failures = []
    helper = Decider(registry, policy, EXAMPLE_CITY, "", 1, lambda: failures.append(1))
    helper.start()
    try:

        async def both():
            m = await helper.measure("measure_passages", traffic.passages)
            # the vehicles of one site, settled early with the reads their join gives them
            site = measured[0]["site_id"]
            early = [v for v in measured if v["site_id"] == site][:3]
            matched = join_site_reads(early, traffic.reads, registry)
            rounds = await helper.decide(_jobs(measured, traffic.reads), [EarlyJob(early, matched)])
            return m, rounds

        m, (cuts, settled) = asyncio.run(both())
    finally:
        helper.close()
    assert helper.helper_pids and helper.helper_pids[0] != os.getpid()
    assert m.vehicles == measured and not m.poison and not m.failures
    assert [r[0] for r in m.rejected] == [r.record["passage_id"] for r in rejected]
    here_cuts, _ = decide_round(_jobs(measured, traffic.reads), [], registry, policy)
    assert [c.verdicts for c in cuts] == [c.verdicts for c in here_cuts]
    for result in cuts + settled:
        for v in result.verdicts:
            assert v == replayed[v["passage_id"]]
    assert len(settled[0].verdicts) == 3
    assert sum(len(c.verdicts) for c in cuts) == len(measured)
    assert failures == []


def test_a_poison_record_costs_only_itself(registry, small_city, monkeypatch):
    traffic, policy = small_city
    poison_id = traffic.passages[5]["passage_id"]
    real = deciding.MEASURES["measure_passages"]

    def measure(records, reg):
        if any(r["passage_id"] == poison_id for r in records):
            raise FloatingPointError("a record no check foresaw")
        return real(records, reg)

    monkeypatch.setitem(deciding.MEASURES, "measure_passages", measure)
    out = measure_isolating("measure_passages", traffic.passages[:20], registry)
    assert [p for p, _ in out.poison] == [poison_id]
    assert "FloatingPointError" in out.poison[0][1]
    assert len(out.vehicles) + len(out.rejected) == 19
    assert out.failures and "isolating" in out.failures[0]

    measured, _ = measure_passages(traffic.passages, registry)
    bad = dict(measured[3], axle_spacings_m=None)  # the verdict kernel's inputs cannot be built
    (result,), _ = decide_round(
        [cut_job([*measured[:3], bad], traffic.reads, {})], [], registry, policy
    )
    assert [p for p, _ in result.poison] == [bad["passage_id"]]
    assert sorted(v["passage_id"] for v in result.verdicts) == sorted(
        m["passage_id"] for m in measured[:3]
    )


def test_small_batches_and_rounds_stay_in_the_main_thread(registry, small_city):
    """At most ``inline_vehicles`` vehicles: done here, the helper never asked (it is dead, and
    nothing notices); more: sent to the helper (found dead, done here, counted)."""
    traffic, policy = small_city
    measured, _ = measure_passages(traffic.passages, registry)
    placed, lost = [], []
    helper = Decider(
        registry, policy, EXAMPLE_CITY, "", 1, lambda: lost.append(1), 5, 5, placed.append
    )
    helper.start()
    try:
        helper.wait_ready()
        os.kill(helper.helper_pids[0], signal.SIGKILL)
        time.sleep(0.5)
        site = measured[0]["site_id"]
        few = [m for m in measured if m["site_id"] == site][:5]
        reads = [r for r in traffic.reads if r["site_id"] == site]

        async def run(passages, vehicles, reads):
            m = await helper.measure("measure_passages", passages)
            (cut,), _ = await helper.decide([cut_job(vehicles, reads, {})], [])
            return m, cut

        small, small_cut = asyncio.run(run(traffic.passages[:5], few, reads))
        assert placed == ["inline", "inline"] and lost == []
        large, _ = asyncio.run(run(traffic.passages[:6], measured, traffic.reads))
        assert placed[2] == "helper" and lost == [1]  # found dead there, done here
    finally:
        helper.close()
    assert small.vehicles == measure_passages(traffic.passages[:5], registry)[0]
    assert len(large.vehicles) == len(measure_passages(traffic.passages[:6], registry)[0])
    assert small_cut.verdicts == decide(few, reads, registry, policy)


def test_a_helper_that_dies_costs_speed_not_a_verdict(registry, small_city):
    traffic, policy = small_city
    measured, _ = measure_passages(traffic.passages, registry)
    expected = decide(measured, traffic.reads, registry, policy)
    lost = []
    helper = Decider(registry, policy, EXAMPLE_CITY, "", 1, lambda: lost.append(1))
    helper.start()
    try:
        deadline = time.monotonic() + 120
        while not helper.helper_pids and time.monotonic() < deadline:
            time.sleep(0.1)
        os.kill(helper.helper_pids[0], signal.SIGKILL)

        async def run():
            return await helper.decide([cut_job(measured, traffic.reads, {})], [])

        (result,), _ = asyncio.run(run())
        assert sorted(result.verdicts, key=lambda v: v["passage_id"]) == sorted(
            expected, key=lambda v: v["passage_id"]
        )
        assert lost == [1]
        assert helper.pool is not None  # another helper for the next round
        (again,), _ = asyncio.run(run())
        assert again.verdicts == result.verdicts
        assert lost == [1]
    finally:
        helper.close()


def test_batches_buffered_during_a_round_go_to_the_next_one():
    async def scenario():
        log, gate = [], asyncio.Event()

        async def round_():
            log.append("round")
            await gate.wait()

        rounds = Rounds(round_, ahead=2)
        await rounds.admitted()  # starts a round
        await asyncio.sleep(0)
        await rounds.admitted()  # buffered while it waits
        await rounds.admitted()
        assert log == ["round"]
        gate.set()
        await asyncio.sleep(0.01)
        assert log == ["round", "round"]  # one more round took both batches
        assert rounds.task.done()

        async def fails():
            raise RuntimeError("the sink refused")

        broken = Rounds(fails)
        await broken.admitted()
        await asyncio.sleep(0.01)
        with pytest.raises(RuntimeError, match="sink refused"):
            await broken.admitted()  # a failed round fails the agent, as without the overlap

    asyncio.run(scenario())


def test_the_agent_waits_when_it_is_ahead_by_more_than_allowed():
    async def scenario():
        gate = asyncio.Event()

        async def round_():
            await gate.wait()

        rounds = Rounds(round_, ahead=1)
        await rounds.admitted()
        await asyncio.sleep(0)
        await rounds.admitted()  # one ahead: allowed
        third = asyncio.ensure_future(rounds.admitted())
        await asyncio.sleep(0.01)
        assert not third.done()  # two ahead: waits for the round
        gate.set()
        await asyncio.wait_for(third, 1.0)

    asyncio.run(scenario())
