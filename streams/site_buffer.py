"""One site's buffered vehicles and camera reads, and what of them can be decided.

The site join (``kernels.plates.join_camera``) splits every camera's events into independent
segments, separated by gaps that no vehicle's capture window crosses. So if, for every camera of
a site, the windows of the earliest k buffered vehicles end before those of the others begin,
and every input is known up to that point, those k vehicles can be decided now with the reads
before each camera's cut (``SiteBuffer.split``), and nothing that arrives later can change
their verdicts: they are exactly the verdicts ``zhichao replay`` gives over the whole archive.
A cut never falls inside a run of frames (the join treats a run as one observation).

Cuts wait for a gap in traffic on every camera of a site. Most vehicles can be decided long
before: ``settle_site`` finds those whose reads are final on every camera although their
chains of gates are not (``kernels.settle``: the join's shortest paths have merged past them).

What a site has decided is its *progress*: the last vehicle decided and, per camera, the time
before which its reads were used. It is written to Redis atomically with the verdicts and read
back when partitions are assigned, so that inputs redelivered after a crash (a Kafka offset is
committed only up to the first unacknowledged record) are recognised as already decided: an old
read must not be offered to a later vehicle, nor an old vehicle decided again without its reads.

Every buffered record keeps an opaque *token* (the Kafka event): the agent acknowledges a token
only when the record's verdict is written, so a crash redelivers what was not yet decided.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections import defaultdict
from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from kernels.plates import JoinParams, expected_capture_us
from kernels.settle import settled_camera
from schemas.plate_grammar import is_trailer, normalise
from schemas.registry import Camera
from schemas.units import US

INF = float("inf")
Record = dict[str, Any]
Matched = tuple[list[Record], list[Record]]  # a vehicle's front and rear reads


@dataclass
class Entry:
    record: Record
    token: Any = None
    lo: tuple[float, ...] = ()  # per camera of the site: earliest and latest capture time
    hi: tuple[float, ...] = ()


@dataclass
class CameraReads:
    """One camera's buffered reads, in capture-time order."""

    entries: list[Entry] = field(default_factory=list)
    times: list[int] = field(default_factory=list)

    def add(self, entry: Entry) -> None:
        ts = entry.record["ts_us"]
        if not self.times or ts >= self.times[-1]:  # the usual case: in order
            self.entries.append(entry)
            self.times.append(ts)
            return
        i = bisect_right(self.times, ts)
        self.entries.insert(i, entry)
        self.times.insert(i, ts)

    def take_before(self, cut: float) -> list[Entry]:
        i = bisect_left(self.times, cut)
        taken = self.entries[:i]
        del self.entries[:i], self.times[:i]
        return taken

    def take(self, read_ids: set[str]) -> list[Entry]:
        """Take out the reads named in ``read_ids``, keeping the others in order."""
        taken, kept = [], []
        for e in self.entries:
            (taken if e.record["read_id"] in read_ids else kept).append(e)
        if taken:
            self.entries, self.times = kept, [e.record["ts_us"] for e in kept]
        return taken

    def splits_run(self, cut: float, gap: float) -> bool:
        """Whether ``cut`` falls between two frames closer than ``gap``."""
        i = bisect_left(self.times, cut)
        return 0 < i < len(self.times) and self.times[i] - self.times[i - 1] <= gap


@dataclass
class Ready:
    """A group to decide now, and the tokens to acknowledge once its verdicts are written."""

    vehicles: list[Record]
    reads: list[Record]
    tokens: list[Any]
    site_id: str = ""
    progress: dict[str, Any] = field(default_factory=dict)  # the site's, after this group
    early: dict[str, tuple[str, ...]] = field(default_factory=dict)  # decided early: read ids
    complete: bool = True  # cut at a gap (False: decided on the wall clock, reads may lack)


@dataclass
class SiteBuffer:
    cameras: tuple[str, ...] = ()  # front and rear cameras of the site, registry order
    vehicles: list[Entry] = field(default_factory=list)  # in (time, passage id) order
    vehicle_keys: list[tuple[int, str]] = field(default_factory=list)
    reads: dict[str, CameraReads] = field(default_factory=lambda: defaultdict(CameraReads))
    vehicle_ids: set[str] = field(default_factory=set)  # what is buffered, against redelivery
    read_ids: set[str] = field(default_factory=set)
    vehicle_stream: Hashable = None  # the input streams this site's records come on
    read_stream: Hashable = None
    oldest_arrival_s: float = 0.0  # wall clock of the last progress with vehicles waiting
    tried: tuple = ()  # state of the last attempt that found no cut
    # what was known complete when an overdue site last found no vehicle's windows closed, and
    # the wall clock when that last moved on: an input that stops moving has gone quiet
    overdue_known: float = -INF
    overdue_known_moved_s: float = 0.0
    done_vehicle: tuple[int, str] = (-1, "")  # (ts_us, passage_id) of the last decided vehicle
    done_reads: dict[str, float] = field(default_factory=dict)  # per camera: used before this
    early: dict[str, tuple[str, ...]] = field(default_factory=dict)  # decided early: read ids
    foreseen: set[str] = field(default_factory=set)  # given to ``settled`` as provisional
    settle_tried: tuple = ()  # state of the last attempt to settle vehicles early

    def progress(self) -> dict[str, Any]:
        """What has been decided, as JSON-ready data (``restore`` reads it)."""
        return {"vehicle": list(self.done_vehicle), "reads": dict(self.done_reads)}

    def restore(self, progress: dict[str, Any]) -> None:
        """Take up progress as written with the site's verdicts, never moving back."""
        self.done_vehicle = max(self.done_vehicle, tuple(progress["vehicle"]))
        for c, t in progress["reads"].items():
            self.done_reads[c] = max(self.done_reads.get(c, -INF), float(t))

    def split(self, known_until: float, gap: float) -> tuple[int, dict[str, float]]:
        """The longest prefix of the site's vehicles that can be decided now, and per camera
        the time before which its reads belong to that prefix; ``gap``: the join's frame gap."""
        n, cams = len(self.vehicles), self.cameras
        if not cams:
            return n, {}
        lo = np.array([e.lo for e in self.vehicles])
        hi = np.array([e.hi for e in self.vehicles])
        reach = np.maximum.accumulate(hi, axis=0)  # reach[k-1]: latest end among the first k
        later = np.minimum.accumulate(lo[::-1], axis=0)[::-1]  # later[k]: earliest start of k..
        later = np.vstack([later[1:], np.full((1, len(cams)), INF)])
        ok = np.all((reach < known_until) & (reach < later), axis=1)
        for k in np.flatnonzero(ok)[::-1] + 1:
            cuts = dict(zip(cams, np.minimum(later[k - 1], known_until).tolist(), strict=True))
            if not any(
                self.reads[c].splits_run(t, gap) for c, t in cuts.items() if c in self.reads
            ):
                return int(k), cuts
        return 0, {}

    def take(
        self, k: int, cuts: dict[str, float] | None, own_reads: set[str] | None, now: float
    ) -> Ready:
        """Take out the first ``k`` vehicles as a group: with the reads before ``cuts`` (a cut),
        or without one (decided on the wall clock) the reads named in ``own_reads``, or every
        read buffered (``None``)."""
        take, self.vehicles = self.vehicles[:k], self.vehicles[k:]
        self.done_vehicle = self.vehicle_keys[k - 1]
        del self.vehicle_keys[:k]
        if own_reads is None:
            reads = self._take_reads(cuts)
        else:
            reads = [e for c in self.reads.values() for e in c.take(own_reads)]
        self._mark_reads_used(take, reads, cuts)
        if self.vehicles:
            self.oldest_arrival_s = now
        self.tried = ()
        self.vehicle_ids.difference_update(e.record["passage_id"] for e in take)
        self.foreseen.difference_update(e.record["passage_id"] for e in take)
        self.read_ids.difference_update(e.record["read_id"] for e in reads)
        early = {
            e.record["passage_id"]: self.early.pop(e.record["passage_id"])
            for e in take
            if e.record["passage_id"] in self.early
        }
        return Ready(
            [e.record for e in take],
            [e.record for e in reads],
            [e.token for e in take + reads],
            take[0].record["site_id"],
            self.progress(),
            early,
            cuts is not None,
        )

    def _mark_reads_used(
        self, take: list[Entry], reads: list[Entry], cuts: dict[str, float] | None
    ) -> None:
        """Per camera, the time before which reads belong to decided vehicles: the cut, or
        without one (decided on the wall clock) the end of the decided vehicles' windows."""
        if cuts is None:
            cuts = {c: max(e.hi[i] for e in take) for i, c in enumerate(self.cameras)}
            for e in reads:
                c = e.record["camera_id"]
                cuts[c] = max(cuts.get(c, -INF), e.record["ts_us"] + 1)
        for c, t in cuts.items():
            self.done_reads[c] = max(self.done_reads.get(c, -INF), float(t))

    def _take_reads(self, cuts: dict[str, float] | None) -> list[Entry]:
        floor = min(cuts.values(), default=INF) if cuts is not None else INF
        taken = []
        for camera_id, reads in self.reads.items():
            cut = INF if cuts is None else cuts.get(camera_id, floor)  # unknown cameras: floor
            taken += reads.take_before(cut)
        return taken

    def expire_reads(self, horizon: float) -> list[Any]:
        """Release the reads older than ``horizon``: their tokens."""
        released = []
        for reads in self.reads.values():
            if reads.times and reads.times[0] < horizon:
                old = reads.take_before(horizon)
                released += [e.token for e in old]
                self.read_ids.difference_update(e.record["read_id"] for e in old)
        return released


def by_time(read: Record) -> tuple[int, str]:
    """The order the join lists reads in (``streams.stages.join_site_reads``'s callers)."""
    return read["ts_us"], read["read_id"]


def settle_site(
    buf: SiteBuffer, cameras: list[Camera], known: float, p: JoinParams
) -> tuple[list[bool], list[bool], list[Matched]]:
    """Per buffered vehicle of the site: whether its reads are final on every camera, whether
    they are on every front camera, and those reads (front, rear; in time, id order as
    ``streams.stages.join_site_reads`` lists them)."""
    vehicles = [e.record for e in buf.vehicles]
    ok = [True] * len(vehicles)
    ok_front = [True] * len(vehicles)
    matched: list[Matched] = [([], []) for _ in vehicles]
    for direction in sorted({v["direction"] for v in vehicles}):
        idx = [i for i, v in enumerate(vehicles) if v["direction"] == direction]
        ms = [vehicles[i] for i in idx]
        arrays = (
            np.array([m["ts_us"] for m in ms], dtype=np.float64),
            np.array([m["last_axle_ts_us"] for m in ms], dtype=np.float64),
            np.array([m["speed_kmh"] / 3.6 for m in ms], dtype=np.float64),
            np.array([m["lane"] for m in ms], dtype=np.int64),
        )
        for cam in cameras:
            entries = buf.reads.get(cam.id)
            reads = sorted(
                (e.record for e in entries.entries if e.record["direction"] == direction)
                if entries is not None
                else (),
                key=by_time,
            )
            good, vehicle_reads = _settle_camera(cam, arrays, reads, known, p)
            side = 0 if cam.view == "front" else 1
            for k, settled in good.items():
                ok[idx[k]] = ok[idx[k]] and settled
                if cam.view == "front":
                    ok_front[idx[k]] = ok_front[idx[k]] and settled
            for r, k in vehicle_reads:
                matched[idx[k]][side].append(r)
    for front, rear in matched:
        front.sort(key=by_time)
        rear.sort(key=by_time)
    return ok, ok_front, matched


def _settle_camera(
    cam: Camera,
    vehicles: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray],
    reads: list[Record],
    known: float,
    p: JoinParams,
) -> tuple[dict[int, bool], list[tuple[Record, int]]]:
    """``settle_site`` at one camera, for the vehicles of one direction (first and last axle
    times, speeds, lanes): per vehicle whether its reads here are final, and the settled reads
    with their vehicles."""
    t_first, t_last, speed, lanes = vehicles
    t_exp, tau = expected_capture_us(cam.view, cam.d_cam_m, t_first, t_last, speed, p)
    texp_from, gate_from = _future_bounds(cam, known, p)
    # vehicles whose gate opens after ``known`` cannot settle yet: they count as later inputs
    # (their times bound the others'); reads after it likewise
    gate_lo = t_exp - p.gate_tau * tau
    kept, rest = np.flatnonzero(gate_lo < known), np.flatnonzero(gate_lo >= known)
    if rest.size:
        texp_from = min(texp_from, float(t_exp[rest].min()))
        gate_from = min(gate_from, float(gate_lo[rest].min()))
    reads = [r for r in reads if r["ts_us"] < known]
    clash = [cam.view == "front" and is_trailer(normalise(r["plate"])) for r in reads]
    vehicle_of, settled = settled_camera(
        t_exp[kept],
        tau[kept],
        lanes[kept],
        cam.lane,
        np.array([r["ts_us"] for r in reads], dtype=np.float64),
        np.array(clash, dtype=np.float64),
        texp_from,
        gate_from,
        known,
        p,
    )
    good = dict.fromkeys(rest.tolist(), False)
    good.update(zip(kept.tolist(), settled.tolist(), strict=True))
    matched = [(r, int(kept[k])) for r, k in zip(reads, vehicle_of.tolist(), strict=True) if k >= 0]
    return good, matched


def _future_bounds(cam: Camera, known: float, p: JoinParams) -> tuple[float, float]:
    """For a vehicle weighed at or after ``known`` (first axle; its last axle no earlier), at
    any speed the join allows (≥ ``min_speed_ms``): the earliest expected capture time at
    ``cam`` and the earliest opening of its gate there (``kernels.plates.expected_capture_us``)."""
    reach = cam.d_cam_m + (p.rear_extra_m if cam.view == "rear" else 0.0)
    slowest = p.min_speed_ms
    texp = known + min(reach, 0.0) / slowest * US
    opening = reach - p.gate_tau * p.tau_per_s * abs(cam.d_cam_m)
    gate = known - p.gate_tau * p.tau_base_s * US + min(opening, 0.0) / slowest * US
    return texp, gate
