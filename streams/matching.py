"""Per-site buffers of the match stage and the rule that says when part of them can be decided.

The site join (``kernels.plates.join_camera``) splits every camera's events into independent
segments. A *cut* at time T that no vehicle's capture window crosses, with every input of the
site known up to T, therefore splits the buffer into a part that can be decided now and a part
that cannot change it: deciding the part before T gives exactly the verdicts ``zhichao replay``
gives over the whole archive. A vehicle that has waited longer than ``max_wait_s`` of wall time
(a camera stream stalled) is decided with the reads it has.

Every buffered record keeps an opaque *token* (the Kafka event): the agent acknowledges a token
only when the record's verdict is written, so a crash redelivers what was not yet decided.
"""

from __future__ import annotations

import time
from bisect import bisect_left
from collections import defaultdict
from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import Any

from kernels.plates import JoinParams
from schemas.registry import Registry

US = 1_000_000
READ_RETENTION_S = 600.0  # reads with no vehicle to wait for are released after this long


@dataclass
class Entry:
    record: dict[str, Any]
    token: Any = None
    windows: dict[str, tuple[float, float]] = field(default_factory=dict)  # camera -> lo, hi


@dataclass
class SiteBuffer:
    vehicles: list[Entry] = field(default_factory=list)
    reads: list[Entry] = field(default_factory=list)
    vehicle_ids: set[str] = field(default_factory=set)  # what is buffered, against redelivery
    read_ids: set[str] = field(default_factory=set)
    vehicle_stream: Hashable = None  # the input streams this site's records come on
    read_stream: Hashable = None
    oldest_arrival_s: float = 0.0  # wall clock when the oldest undecided vehicle arrived


@dataclass
class Ready:
    """A group to decide now, and the tokens to acknowledge once its verdicts are written."""

    vehicles: list[dict[str, Any]]
    reads: list[dict[str, Any]]
    tokens: list[Any]


@dataclass
class MatchBuffers:
    registry: Registry
    max_wait_s: float = 10.0
    slack_s: float = 2.0  # reads may arrive this much behind in event time
    params: JoinParams = field(default_factory=JoinParams)
    sites: dict[str, SiteBuffer] = field(default_factory=lambda: defaultdict(SiteBuffer))
    released: list[Any] = field(default_factory=list)  # tokens of records that need no verdict
    marks: dict[Hashable, int] = field(default_factory=dict)  # latest event time per input stream

    def _advance(self, stream: Hashable, ts_us: int) -> None:
        if ts_us > self.marks.get(stream, 0):
            self.marks[stream] = ts_us

    def add_vehicle(self, vehicle: dict[str, Any], token: Any = None,
                    stream: Hashable = None) -> None:
        """Buffer a measured vehicle; ``stream`` is the input it came on (topic, partition)."""
        buf = self.sites[vehicle["site_id"]]
        buf.vehicle_stream = stream if stream is not None else ("vehicles", vehicle["site_id"])
        self._advance(buf.vehicle_stream, vehicle["ts_us"])
        if vehicle["passage_id"] in buf.vehicle_ids:  # redelivered after a restart
            self.released.append(token)
            return
        buf.vehicle_ids.add(vehicle["passage_id"])
        if not buf.vehicles:
            buf.oldest_arrival_s = time.monotonic()
        buf.vehicles.append(Entry(vehicle, token, self._windows(vehicle)))

    def add_read(self, read: dict[str, Any], token: Any = None, stream: Hashable = None) -> None:
        """Buffer a weigh-site camera read; any read advances its input stream's clock."""
        stream = stream if stream is not None else ("reads", read["site_id"])
        self._advance(stream, read["ts_us"])
        if read["view"] not in ("front", "rear"):
            self.released.append(token)  # checkpoint sightings feed trajectories, not the join
            return
        buf = self.sites[read["site_id"]]
        buf.read_stream = stream
        if read["read_id"] in buf.read_ids:
            self.released.append(token)
            return
        buf.read_ids.add(read["read_id"])
        buf.reads.append(Entry(read, token))

    def _windows(self, vehicle: dict[str, Any]) -> dict[str, tuple[float, float]]:
        """Per camera of the site: earliest and latest time it could capture this vehicle."""
        v = max(vehicle["speed_kmh"] / 3.6, 0.3)
        p = self.params
        out = {}
        for cam in self.registry.cameras_of_site(vehicle["site_id"]):
            if cam.view not in ("front", "rear"):
                continue
            base = vehicle["last_axle_ts_us"] if cam.view == "rear" else vehicle["ts_us"]
            extra = p.rear_extra_m if cam.view == "rear" else 0.0
            t_exp = base + (cam.d_cam_m + extra) / v * US
            gate = p.gate_tau * (p.tau_base_s + p.tau_per_s * abs(cam.d_cam_m) / v) * US
            out[cam.id] = (t_exp - gate, t_exp + gate + p.frame_gap_s * US)
        return out

    def _known_until(self, buf: SiteBuffer) -> float:
        """Event time up to which every input of the site has arrived. An input stream is one
        Kafka partition, ordered by publication; devices publish within ``slack_s`` of capture,
        so any record of *any* site on the partition also vouches for this one."""
        if buf.vehicle_stream is None or buf.read_stream is None:
            return -float("inf")
        marks = self.marks
        return min(marks[buf.vehicle_stream], marks[buf.read_stream]) - self.slack_s * US

    def _split(self, order: list[Entry], reads: list[Entry],
               known_until: float) -> tuple[int, dict[str, float]]:
        """The longest prefix of ``order`` (by time) that can be decided now, and per camera the
        time before which its reads belong to that prefix: for every camera, the prefix's
        windows end before the others' begin and before what is known, and the cut does not
        fall inside a run of frames (the join treats a run as one observation)."""
        n = len(order)
        cams = sorted({c for e in order for c in e.windows})
        if not cams:
            return n, {}
        inf = float("inf")
        suffix_lo = [{c: inf for c in cams}]
        for e in reversed(order):
            last = suffix_lo[-1]
            suffix_lo.append({c: min(last[c], e.windows.get(c, (inf, inf))[0]) for c in cams})
        suffix_lo.reverse()  # suffix_lo[k]: earliest window start among order[k:]
        valid, reach = [], {c: -inf for c in cams}
        for k in range(1, n + 1):
            for c, (_, hi) in order[k - 1].windows.items():
                reach[c] = max(reach[c], hi)
            if all(reach[c] < known_until and reach[c] < suffix_lo[k][c] for c in cams):
                valid.append(k)
        read_ts: dict[str, list[int]] = defaultdict(list)
        for e in reads:
            read_ts[e.record["camera_id"]].append(e.record["ts_us"])
        for times in read_ts.values():
            times.sort()
        gap = self.params.frame_gap_s * US
        for k in reversed(valid):
            cuts = {c: min(suffix_lo[k][c], known_until) for c in cams}
            if not any(_splits_run(read_ts[c], cuts[c], gap) for c in cams):
                return k, cuts
        return 0, {}

    def ready(self, flush_all: bool = False) -> list[Ready]:
        """Take out every group that can be decided now."""
        out = []
        for buf in self.sites.values():
            if not buf.vehicles:
                horizon = self.marks.get(buf.read_stream, 0) - READ_RETENTION_S * US
                old = [e for e in buf.reads if e.record["ts_us"] < horizon]
                self.released += [e.token for e in old]
                buf.reads = [e for e in buf.reads if e.record["ts_us"] >= horizon]
                buf.read_ids.difference_update(e.record["read_id"] for e in old)
                continue
            order = sorted(buf.vehicles, key=lambda e: (e.record["ts_us"], e.record["passage_id"]))
            if flush_all or time.monotonic() - buf.oldest_arrival_s > self.max_wait_s:
                k, cuts = len(order), None  # waited long enough: decide with what is here
            else:
                k, cuts = self._split(order, buf.reads, self._known_until(buf))
                if k == 0:
                    continue
            take, buf.vehicles = order[:k], order[k:]
            if cuts is None:
                reads, buf.reads = buf.reads, []
            else:
                floor = min(cuts.values(), default=float("inf"))  # reads of unknown cameras
                mine = [e.record["ts_us"] < cuts.get(e.record["camera_id"], floor)
                        for e in buf.reads]
                reads = [e for e, m in zip(buf.reads, mine, strict=True) if m]
                buf.reads = [e for e, m in zip(buf.reads, mine, strict=True) if not m]
            if buf.vehicles:
                buf.oldest_arrival_s = time.monotonic()
            buf.vehicle_ids.difference_update(e.record["passage_id"] for e in take)
            buf.read_ids.difference_update(e.record["read_id"] for e in reads)
            out.append(Ready([e.record for e in take], [e.record for e in reads],
                             [e.token for e in take + reads]))
        return out

    def take_released(self) -> list[Any]:
        tokens, self.released = self.released, []
        return tokens

    def pending(self) -> int:
        return sum(len(b.vehicles) for b in self.sites.values())


def _splits_run(times: list[int], cut: float, gap: float) -> bool:
    """Whether ``cut`` falls between two frames closer than ``gap`` (sorted ``times``)."""
    i = bisect_left(times, cut)
    return 0 < i < len(times) and times[i] - times[i - 1] <= gap
