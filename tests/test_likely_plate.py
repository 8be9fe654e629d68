"""The likely plate of an unidentified weighing (M7) against the simulator's truth: trucks that
covered their plate at a weigh site were read at the checkpoint before it; the plate read there
at the predicted time is named, best first."""

from __future__ import annotations

import pytest

from schemas.plate_grammar import normalise
from schemas.units import US
from sim.config import SimConfig
from sim.traffic import CitySimulator
from sinks.sightings import CAMERA_SIGHTINGS_KEY, parse_camera_member, sighting_args
from streams.likely_plate import Probe, rank, upstream_probe


@pytest.fixture(scope="module")
def covered_city(registry):
    return CitySimulator(SimConfig(vehicles=1500, seed=41, coverer_share=0.25), registry).run()


def camera_index(traffic) -> dict[str, list[tuple[str, int, str]]]:
    """What the sink's script stores per checkpoint camera (the same arguments)."""
    args = sighting_args(traffic.reads)
    index: dict[str, list] = {}
    prefix = CAMERA_SIGHTINGS_KEY.format(camera_id="")
    for key, _, member in zip(args[::3], args[1::3], args[2::3], strict=True):
        if key.startswith(prefix):
            index.setdefault(key[len(prefix) :], []).append(parse_camera_member(member))
    return index


def test_covered_trucks_are_named_from_the_checkpoint_before_the_site(covered_city, registry):
    index = camera_index(covered_city)
    site_reads = [r for r in covered_city.reads if r["view"] in ("front", "rear") and r["plate"]]
    named = top1 = reachable = 0
    for t in covered_city.truth:
        if not t["covered"] or "bypass" in t["behaviours"]:
            continue
        probe = upstream_probe(registry.sites[t["site_id"]], t["ts_us"], registry)
        if probe is None:
            continue
        reads = [r for r in index.get(probe.camera_id, []) if probe.lo_us <= r[1] <= probe.hi_us]
        truth = normalise(t["plate_front"])
        if truth not in {r[0] for r in reads}:
            continue  # not read upstream at all (the simulator skips 15 %): nothing to find
        reachable += 1
        spread = (probe.hi_us - probe.lo_us) // 2
        seen = {
            normalise(r["plate"])
            for r in site_reads
            if r["site_id"] == t["site_id"] and abs(r["ts_us"] - t["ts_us"]) <= spread
        }
        found = [c.plate for c in rank(probe, reads, seen)]
        named += truth in found
        top1 += found[:1] == [truth]
    assert reachable >= 20, reachable
    # measured: 93 / 125 in the three named, 27 / 125 first. The checkpoint read alone cannot
    # tell apart the trucks of a busy few minutes (a window holds 25 truck plates on average:
    # a random three would name it 12 % of the time); the downstream checkpoint would, later
    # (not done yet)
    assert named / reachable >= 0.65, (named, reachable)
    assert top1 / reachable >= 0.15, (top1, reachable)


def test_ranking_rules():
    probe = Probe("CAM", "KK", expected_us=1000 * US, lo_us=900 * US, hi_us=1100 * US)
    reads = [
        ("浙D11111", 1000 * US, "yellow"),  # on time
        ("浙D22222", 1050 * US, "yellow"),  # half the spread late
        ("浙D33333", 1001 * US, "blue"),  # a car: not a truck plate
        ("浙D44444", 1200 * US, "yellow"),  # outside the window
        ("浙D55555", 999 * US, "yellow"),  # read at the weigh site too: another truck
        ("浙D22222", 1090 * US, "yellow"),  # a second read of a plate: the better one counts
    ]
    found = rank(probe, reads, seen_at_site={"浙D55555"})
    assert [(c.plate, c.z) for c in found] == [("浙D11111", 0.0), ("浙D22222", 0.5)]


def test_no_checkpoint_before_the_site_means_no_probe(registry):
    for site in registry.weigh_sites:
        probe = upstream_probe(site, 10**15, registry)
        if probe is not None:
            checkpoint = registry.sites[probe.site_id]
            assert checkpoint.road == site.road and checkpoint.kind == "checkpoint"
            assert probe.lo_us < probe.expected_us < probe.hi_us < 10**15
