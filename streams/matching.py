"""Per-site buffers of the match stage and the rule that says when part of them can be decided.

The site join (``kernels.plates.join_camera``) splits every camera's events into independent
segments, separated by gaps that no vehicle's capture window crosses. So if, for every camera of
a site, the windows of the earliest k buffered vehicles end before those of the others begin,
and every input is known up to that point, those k vehicles can be decided now with the reads
before each camera's cut, and nothing that arrives later can change their verdicts: they are
exactly the verdicts ``zhichao replay`` gives over the whole archive. A cut never falls inside
a run of frames (the join treats a run as one observation). A vehicle that has waited
``max_wait_s`` (a camera stream stalled, or no traffic behind it) is decided with the reads it
has. That wait is counted on ``clock``: in the worker, seconds during which the broker answered
(a frozen or unreachable broker is not a silent camera), and only while the site's partitions
are caught up (a worker reading a backlog is not waiting for anything, it simply has not read
the reads yet).

Cuts wait for a gap in traffic on every camera of a site, a median 14 s and a p99 of a minute of
event time at the example city's volumes. Most vehicles can be decided long before:
``settled`` finds those whose reads are final on every camera although their chains of gates
are not (``kernels.settle``: the join's shortest paths have merged past them), and the agent
decides them at once. They stay buffered, unacknowledged and out of the site's progress until
a cut takes them — the join of their group still needs them as rows — and that group's join
must give them the same reads (``Ready.early``; the agent counts any that differ). A worker
reading a backlog (``backlogged`` partitions) settles nothing early: its cuts come as fast.

What a site has decided is its *progress*: the last vehicle decided and, per camera, the time
before which its reads were used. It is written to Redis atomically with the verdicts and read
back when partitions are assigned, so that inputs redelivered after a crash (a Kafka offset is
committed only up to the first unacknowledged record) are recognised as already decided: an old
read must not be offered to a later vehicle, nor an old vehicle decided again without its reads.

"Known up to": an input stream is one Kafka partition, read in publication order, and devices
publish within ``slack_s`` of capture, so any record on a partition — of any site — vouches that
the partition's older records have arrived; and a partition read to its end after newer records
were read on two others is complete up to their time (``vouch``, ``streams.vouching``).

Every buffered record keeps an opaque *token* (the Kafka event): the agent acknowledges a token
only when the record's verdict is written, so a crash redelivers what was not yet decided.
"""

from __future__ import annotations

import time
from bisect import bisect_left, bisect_right
from collections import defaultdict
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from kernels.plates import JoinParams, expected_capture_us
from kernels.settle import settled_camera
from schemas.plate_grammar import is_trailer, normalise
from schemas.registry import Camera, Registry
from schemas.units import US
from streams.stages import join_site_reads, read_ids_of

READ_RETENTION_S = 600.0  # reads with no vehicle to wait for are released after this long
BACKLOG_RECORDS = 1000  # a partition this far behind is a backlog: its sites settle nothing early
INF = float("inf")
MAX_LANE_GAP = 1  # kernels.plates.join_camera: a camera reads its own lane and the adjacent ones


@dataclass
class Entry:
    record: dict[str, Any]
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
    done_vehicle: tuple[int, str] = (-1, "")  # (ts_us, passage_id) of the last decided vehicle
    done_reads: dict[str, float] = field(default_factory=dict)  # per camera: used before this
    early: dict[str, tuple[str, ...]] = field(default_factory=dict)  # decided early: read ids
    foreseen: set[str] = field(default_factory=set)  # given to ``settled`` as provisional
    settle_tried: tuple = ()  # state of the last attempt to settle vehicles early

    def progress(self) -> dict[str, Any]:
        """What has been decided, as JSON-ready data (``MatchBuffers.restore`` reads it)."""
        return {"vehicle": list(self.done_vehicle), "reads": dict(self.done_reads)}


@dataclass
class Ready:
    """A group to decide now, and the tokens to acknowledge once its verdicts are written."""

    vehicles: list[dict[str, Any]]
    reads: list[dict[str, Any]]
    tokens: list[Any]
    site_id: str = ""
    progress: dict[str, Any] = field(default_factory=dict)  # the site's, after this group
    early: dict[str, tuple[str, ...]] = field(default_factory=dict)  # decided early: read ids
    complete: bool = True  # cut at a gap (False: decided on the wall clock, reads may lack)


@dataclass
class Early:
    """Vehicles whose reads are final although their site cannot be cut yet
    (``kernels.settle``): decided now, acknowledged with the group that later takes them.

    ``provisional``: heavy vehicles whose *front* reads are final while a rear camera's are
    not (a slow truck is seconds from its rear camera): what their verdict will most likely
    be, for an interception order ahead of it (预判), never a verdict; no rear reads."""

    vehicles: list[dict[str, Any]]
    matched: list[tuple[list[dict[str, Any]], list[dict[str, Any]]]]  # front, rear reads
    site_id: str
    provisional: bool = False


@dataclass
class MatchBuffers:
    registry: Registry
    max_wait_s: float = 10.0
    slack_s: float = 2.0  # devices publish within this much of capture
    params: JoinParams = field(default_factory=JoinParams)
    sites: dict[str, SiteBuffer] = field(default_factory=dict)
    released: list[Any] = field(default_factory=list)  # tokens of records that need no verdict
    marks: dict[Hashable, int] = field(default_factory=dict)  # latest event time per input stream
    # per input stream: complete up to this event time although its last record is older
    # (read to its end after newer records were read on others: ``streams.vouching``)
    floors: dict[Hashable, int] = field(default_factory=dict)
    site_cameras: dict[str, list[Camera]] = field(default_factory=dict)
    lagging: set[Hashable] = field(default_factory=set)  # input streams not yet caught up
    backlogged: set[Hashable] = field(default_factory=set)  # and far behind: no early decisions
    clock: Callable[[], float] = time.monotonic  # what ``max_wait_s`` is counted in
    stale: int = 0  # redelivered records found already decided
    # per device: records that came after their time was already known complete (published
    # later than ``slack_s`` after capture: the contract every "known until" rests on)
    late: dict[str, int] = field(default_factory=dict)

    def _cameras(self, site_id: str) -> list[Camera]:
        """The site's front and rear cameras, in registry order."""
        cams = self.site_cameras.get(site_id)
        if cams is None:
            cams = self.site_cameras[site_id] = [
                c for c in self.registry.cameras_of_site(site_id) if c.view in ("front", "rear")
            ]
        return cams

    def _site(self, site_id: str) -> SiteBuffer:
        buf = self.sites.get(site_id)
        if buf is None:
            cams = tuple(c.id for c in self._cameras(site_id))
            buf = self.sites[site_id] = SiteBuffer(cameras=cams)
        return buf

    def _advance(self, stream: Hashable, ts_us: int) -> None:
        if ts_us > self.marks.get(stream, 0):
            self.marks[stream] = ts_us

    def add_vehicle(
        self, vehicle: dict[str, Any], token: Any = None, stream: Hashable = None
    ) -> None:
        """Buffer a measured vehicle; ``stream`` is the input it came on (topic, partition)."""
        buf = self._site(vehicle["site_id"])
        buf.vehicle_stream = stream if stream is not None else ("vehicles", vehicle["site_id"])
        self._check_late(buf.vehicle_stream, vehicle["ts_us"], vehicle["device_id"])
        self._advance(buf.vehicle_stream, vehicle["ts_us"])
        key = (vehicle["ts_us"], vehicle["passage_id"])
        if vehicle["passage_id"] in buf.vehicle_ids or key <= buf.done_vehicle:  # redelivered
            self.stale += key <= buf.done_vehicle
            self.released.append(token)
            return
        buf.vehicle_ids.add(vehicle["passage_id"])
        if not buf.vehicles:
            buf.oldest_arrival_s = self.clock()
        i = bisect_right(buf.vehicle_keys, key)
        buf.vehicle_keys.insert(i, key)
        buf.vehicles.insert(i, Entry(vehicle, token, *self._windows(vehicle)))

    def add_read(self, read: dict[str, Any], token: Any = None, stream: Hashable = None) -> None:
        """Buffer a weigh-site camera read; any read advances its input stream's clock."""
        stream = stream if stream is not None else ("reads", read["site_id"])
        if read["view"] not in ("front", "rear"):
            self._advance(stream, read["ts_us"])
            self.released.append(token)  # checkpoint sightings feed trajectories, not the join
            return
        self._check_late(stream, read["ts_us"], read["camera_id"])
        self._advance(stream, read["ts_us"])
        buf = self._site(read["site_id"])
        buf.read_stream = stream
        used = read["ts_us"] < buf.done_reads.get(read["camera_id"], -INF)
        if read["read_id"] in buf.read_ids or used:  # redelivered, or its vehicles are decided
            self.stale += used
            self.released.append(token)
            return
        buf.read_ids.add(read["read_id"])
        buf.reads[read["camera_id"]].add(Entry(read, token))

    def latest(self) -> int:
        """The newest event time read on at least two input streams (0 before that): what a
        caught-up partition vouches for (``vouch``). A device whose clock runs ahead moves only
        its own partition's mark (whose sites pay for it, as before), not every quiet one's."""
        marks = sorted(self.marks.values())
        return marks[-2] if len(marks) > 1 else 0

    def vouch(self, stream: Hashable, ts_us: int) -> None:
        """``stream`` has been read to its end after records of time ``ts_us`` were read
        (``latest``): every record it will bring was captured after ``ts_us`` less the slack."""
        if ts_us > self.floors.get(stream, 0):
            self.floors[stream] = ts_us

    def _complete(self, stream: Hashable) -> int:
        return max(self.marks.get(stream, 0), self.floors.get(stream, 0))

    def _check_late(self, stream: Hashable, ts_us: int, device_id: str) -> None:
        known = self._complete(stream)
        if known and ts_us < known - self.slack_s * US:
            self.late[device_id] = self.late.get(device_id, 0) + 1

    def take_late(self) -> dict[str, int]:
        late, self.late = self.late, {}
        return late

    def _windows(self, vehicle: dict[str, Any]) -> tuple[tuple[float, ...], tuple[float, ...]]:
        """Per camera of the site: earliest and latest time it could capture this vehicle; none
        (an empty window) for a camera the join never gives it: two or more lanes away."""
        v = max(vehicle["speed_kmh"] / 3.6, 0.3)
        p = self.params
        lo, hi = [], []
        for cam in self._cameras(vehicle["site_id"]):
            if abs(cam.lane - vehicle["lane"]) > MAX_LANE_GAP:
                lo.append(INF)
                hi.append(-INF)
                continue
            base = vehicle["last_axle_ts_us"] if cam.view == "rear" else vehicle["ts_us"]
            extra = p.rear_extra_m if cam.view == "rear" else 0.0
            t_exp = base + (cam.d_cam_m + extra) / v * US
            gate = p.gate_tau * (p.tau_base_s + p.tau_per_s * abs(cam.d_cam_m) / v) * US
            lo.append(t_exp - gate)
            hi.append(t_exp + gate + p.frame_gap_s * US)
        return tuple(lo), tuple(hi)

    def _known_until(self, buf: SiteBuffer) -> float:
        """Event time up to which every input of the site has arrived."""
        if buf.vehicle_stream is None or buf.read_stream is None:
            return -INF
        return min(self._complete(buf.vehicle_stream), self._complete(buf.read_stream)) - (
            self.slack_s * US
        )

    def _split(self, buf: SiteBuffer, known_until: float) -> tuple[int, dict[str, float]]:
        """The longest prefix of the site's vehicles that can be decided now, and per camera
        the time before which its reads belong to that prefix."""
        n, cams = len(buf.vehicles), buf.cameras
        if not cams:
            return n, {}
        lo = np.array([e.lo for e in buf.vehicles])
        hi = np.array([e.hi for e in buf.vehicles])
        reach = np.maximum.accumulate(hi, axis=0)  # reach[k-1]: latest end among the first k
        later = np.minimum.accumulate(lo[::-1], axis=0)[::-1]  # later[k]: earliest start of k..
        later = np.vstack([later[1:], np.full((1, len(cams)), INF)])
        ok = np.all((reach < known_until) & (reach < later), axis=1)
        gap = self.params.frame_gap_s * US
        for k in np.flatnonzero(ok)[::-1] + 1:
            cuts = dict(zip(cams, np.minimum(later[k - 1], known_until).tolist(), strict=True))
            if not any(buf.reads[c].splits_run(t, gap) for c, t in cuts.items() if c in buf.reads):
                return int(k), cuts
        return 0, {}

    def ready(self, flush_all: bool = False) -> list[Ready]:
        """Take out every group that can be decided now."""
        out = []
        now = self.clock()
        for buf in self.sites.values():
            if not buf.vehicles:
                self._expire_reads(buf)
                continue
            if buf.vehicle_stream in self.lagging or buf.read_stream in self.lagging:
                buf.oldest_arrival_s = now  # catching up: the wall clock starts when caught up
            own_reads, cuts = None, None  # no cut: the group's reads may lack (Ready.complete)
            if flush_all:
                k = len(buf.vehicles)
            elif now - buf.oldest_arrival_s > self.max_wait_s:
                k, own_reads = self._overdue(buf)
            else:
                known = self._known_until(buf)
                state = (known, len(buf.vehicles), len(buf.read_ids))
                if state == buf.tried:
                    continue  # nothing new since the last attempt
                k, cuts = self._split(buf, known)
                if k == 0:
                    buf.tried = state
                    continue
            take, buf.vehicles = buf.vehicles[:k], buf.vehicles[k:]
            buf.done_vehicle = buf.vehicle_keys[k - 1]
            del buf.vehicle_keys[:k]
            if own_reads is None:
                reads = self._take_reads(buf, cuts)
            else:
                reads = [e for c in buf.reads.values() for e in c.take(own_reads)]
            self._mark_reads_used(buf, take, reads, cuts)
            if buf.vehicles:
                buf.oldest_arrival_s = now
            buf.tried = ()
            buf.vehicle_ids.difference_update(e.record["passage_id"] for e in take)
            buf.foreseen.difference_update(e.record["passage_id"] for e in take)
            buf.read_ids.difference_update(e.record["read_id"] for e in reads)
            early = {
                e.record["passage_id"]: buf.early.pop(e.record["passage_id"])
                for e in take
                if e.record["passage_id"] in buf.early
            }
            out.append(
                Ready(
                    [e.record for e in take],
                    [e.record for e in reads],
                    [e.token for e in take + reads],
                    take[0].record["site_id"],
                    buf.progress(),
                    early,
                    cuts is not None,
                )
            )
        return out

    def _overdue(self, buf: SiteBuffer) -> tuple[int, set[str] | None]:
        """A site that waited ``max_wait_s`` without a gap in its traffic (a busy toll
        entrance may have none for minutes): its leading vehicles whose capture windows all
        closed before what is known — every read they can have is in — with the ids of the
        reads a join of everything buffered gives them, so that the vehicles still waiting keep
        theirs. If none has closed (an input has gone quiet): all of them, with every read
        buffered (``None``)."""
        known = self._known_until(buf)
        hi = np.array([e.hi for e in buf.vehicles]).reshape(len(buf.vehicles), -1)
        closed = np.all(np.maximum.accumulate(hi, axis=0) < known, axis=1)
        k = int(closed.sum())  # a prefix: the running maximum only grows
        if k == 0:
            return len(buf.vehicles), None
        entries = sorted(
            (e for reads in buf.reads.values() for e in reads.entries if e.record["ts_us"] < known),
            key=lambda e: _by_time(e.record),
        )
        matched = join_site_reads(
            [e.record for e in buf.vehicles], [e.record for e in entries], self.registry
        )
        return k, {r["read_id"] for front, rear in matched[:k] for r in front + rear}

    def settled(self, foresee_from_kg: float | None = None) -> list[Early]:
        """Vehicles that can be decided before their site can be cut, because no later input
        can change their reads on any camera (``kernels.settle``). They stay buffered (the join
        of their group still needs them) and unacknowledged until a cut takes them; once the
        caller has decided them (``decided_early``), ``Ready.early`` names them.

        With ``foresee_from_kg``, also (once each, ``provisional``) the vehicles of at least
        that gross weight with a front read whose front reads are final although their rear
        reads are not."""
        out = []
        for site_id, buf in self.sites.items():
            if len(buf.early) == len(buf.vehicles):
                continue
            if buf.vehicle_stream in self.backlogged or buf.read_stream in self.backlogged:
                continue  # reading a backlog: the cut comes as soon as the rest is read
            known = self._known_until(buf)
            state = (known, len(buf.vehicles), len(buf.read_ids))
            if known == -INF or state == buf.settle_tried:
                continue
            buf.settle_tried = state
            gap = self.params.frame_gap_s * US
            front = [i for i, c in enumerate(self._cameras(site_id)) if c.view == "front"]
            open_ = [e for e in buf.vehicles if e.record["passage_id"] not in buf.early]
            heavy = [
                e
                for e in open_
                if foresee_from_kg is not None
                and e.record["passage_id"] not in buf.foreseen
                and e.record["gvw_kg"] >= foresee_from_kg
            ]
            if not any(  # settling needs every gate of the vehicle closed to later reads
                max(e.hi, default=INF) - gap < known for e in open_
            ) and not any(max((e.hi[i] for i in front), default=INF) - gap < known for e in heavy):
                continue
            ok, ok_front, matched = self._settle(buf, known)
            heavy_ids = {e.record["passage_id"] for e in heavy}
            take, ahead = [], []
            for e, good, good_front, m in zip(buf.vehicles, ok, ok_front, matched, strict=True):
                pid = e.record["passage_id"]
                if good and pid not in buf.early:
                    take.append((e.record, m))
                elif good_front and m[0] and pid in heavy_ids:
                    ahead.append((e.record, (m[0], [])))
            if take:
                out.append(Early([v for v, _ in take], [m for _, m in take], site_id))
            if ahead:
                buf.foreseen.update(v["passage_id"] for v, _ in ahead)
                out.append(Early([v for v, _ in ahead], [m for _, m in ahead], site_id, True))
        return out

    def decided_early(self, group: Early, passage_ids: set[str]) -> None:
        """Record which vehicles of ``group`` were decided (their group's cut will not decide
        them again, only check that its join gives them the same reads)."""
        buf = self.sites.get(group.site_id)
        if buf is None:
            return
        for v, (front, rear) in zip(group.vehicles, group.matched, strict=True):
            if v["passage_id"] in passage_ids:
                buf.early[v["passage_id"]] = read_ids_of(front, rear)

    def _settle(
        self, buf: SiteBuffer, known: float
    ) -> tuple[list[bool], list[bool], list[tuple[list[dict[str, Any]], list[dict[str, Any]]]]]:
        """Per buffered vehicle: whether its reads are final on every camera, whether they are
        on every front camera, and those reads (front, rear; in time, id order as
        ``streams.stages.join_site_reads`` lists them)."""
        vehicles = [e.record for e in buf.vehicles]
        ok = [True] * len(vehicles)
        ok_front = [True] * len(vehicles)
        matched: list[tuple[list[dict[str, Any]], list[dict[str, Any]]]] = [
            ([], []) for _ in vehicles
        ]
        p = self.params
        for direction in sorted({v["direction"] for v in vehicles}):
            idx = [i for i, v in enumerate(vehicles) if v["direction"] == direction]
            ms = [vehicles[i] for i in idx]
            t_first = np.array([m["ts_us"] for m in ms], dtype=np.float64)
            t_last = np.array([m["last_axle_ts_us"] for m in ms], dtype=np.float64)
            speed = np.array([m["speed_kmh"] / 3.6 for m in ms], dtype=np.float64)
            lanes = np.array([m["lane"] for m in ms], dtype=np.int64)
            for cam in self._cameras(vehicles[0]["site_id"]):
                entries = buf.reads.get(cam.id)
                reads = sorted(
                    (e.record for e in entries.entries if e.record["direction"] == direction)
                    if entries is not None
                    else (),
                    key=_by_time,
                )
                t_exp, tau = expected_capture_us(cam.view, cam.d_cam_m, t_first, t_last, speed, p)
                texp_from, gate_from = _future_bounds(cam, known, p)
                # vehicles whose gate opens after ``known`` cannot settle yet: they count as
                # later inputs (their times bound the others'); reads after it likewise
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
                for k in rest.tolist():
                    ok[idx[k]] = False
                    if cam.view == "front":
                        ok_front[idx[k]] = False
                for k, good in zip(kept.tolist(), settled.tolist(), strict=True):
                    ok[idx[k]] = ok[idx[k]] and good
                    if cam.view == "front":
                        ok_front[idx[k]] = ok_front[idx[k]] and good
                side = 0 if cam.view == "front" else 1
                for r, k in zip(reads, vehicle_of.tolist(), strict=True):
                    if k >= 0:
                        matched[idx[kept[k]]][side].append(r)
        for front, rear in matched:
            front.sort(key=_by_time)
            rear.sort(key=_by_time)
        return ok, ok_front, matched

    @staticmethod
    def _mark_reads_used(
        buf: SiteBuffer, take: list[Entry], reads: list[Entry], cuts: dict[str, float] | None
    ) -> None:
        """Per camera, the time before which reads belong to decided vehicles: the cut, or
        without one (decided on the wall clock) the end of the decided vehicles' windows."""
        if cuts is None:
            cuts = {c: max(e.hi[i] for e in take) for i, c in enumerate(buf.cameras)}
            for e in reads:
                c = e.record["camera_id"]
                cuts[c] = max(cuts.get(c, -INF), e.record["ts_us"] + 1)
        for c, t in cuts.items():
            buf.done_reads[c] = max(buf.done_reads.get(c, -INF), float(t))

    def restore(self, progress: dict[str, dict[str, Any]]) -> None:
        """Take up the progress of sites as written with their verdicts (after a restart or a
        rebalance), never moving a site back."""
        for site_id, p in progress.items():
            buf = self._site(site_id)
            buf.done_vehicle = max(buf.done_vehicle, tuple(p["vehicle"]))
            for c, t in p["reads"].items():
                buf.done_reads[c] = max(buf.done_reads.get(c, -INF), float(t))

    @staticmethod
    def _take_reads(buf: SiteBuffer, cuts: dict[str, float] | None) -> list[Entry]:
        floor = min(cuts.values(), default=INF) if cuts is not None else INF
        taken = []
        for camera_id, reads in buf.reads.items():
            cut = INF if cuts is None else cuts.get(camera_id, floor)  # unknown cameras: floor
            taken += reads.take_before(cut)
        return taken

    def _expire_reads(self, buf: SiteBuffer) -> None:
        """Reads with no vehicle to wait for are released once both of the site's inputs are
        ``READ_RETENTION_S`` past them. While a backlog is read, one topic can run far ahead of
        the other: reads are not given up on while the site's weighings are still to come."""
        if buf.vehicle_stream is None:
            if self.lagging:
                return
            horizon = self.marks.get(buf.read_stream, 0) - READ_RETENTION_S * US
        else:
            horizon = self._known_until(buf) - READ_RETENTION_S * US
        for reads in buf.reads.values():
            if reads.times and reads.times[0] < horizon:
                old = reads.take_before(horizon)
                self.released += [e.token for e in old]
                buf.read_ids.difference_update(e.record["read_id"] for e in old)

    def forget(self, streams: set[Hashable]) -> int:
        """Drop the sites whose inputs come on ``streams`` (partitions revoked in a rebalance),
        unacknowledged; returns how many vehicles were dropped."""
        gone = [
            site
            for site, buf in self.sites.items()
            if buf.vehicle_stream in streams or buf.read_stream in streams
        ]
        dropped = sum(len(self.sites[site].vehicles) for site in gone)
        for site in gone:
            del self.sites[site]
        for stream in streams:
            self.marks.pop(stream, None)
            self.floors.pop(stream, None)
        return dropped

    def take_released(self) -> list[Any]:
        tokens, self.released = self.released, []
        return tokens

    def pending(self) -> int:
        return sum(len(b.vehicles) for b in self.sites.values())


def _by_time(read: dict[str, Any]) -> tuple[int, str]:
    """The order the join lists reads in (``streams.stages.join_site_reads``'s callers)."""
    return read["ts_us"], read["read_id"]


def _future_bounds(cam: Camera, known: float, p: JoinParams) -> tuple[float, float]:
    """For a vehicle weighed at or after ``known`` (first axle; its last axle no earlier), at
    any speed the join allows (≥ 0.3 m/s): the earliest expected capture time at ``cam`` and
    the earliest opening of its gate there (``kernels.plates.expected_capture_us``)."""
    reach = cam.d_cam_m + (p.rear_extra_m if cam.view == "rear" else 0.0)
    slowest = 0.3
    texp = known + min(reach, 0.0) / slowest * US
    opening = reach - p.gate_tau * p.tau_per_s * abs(cam.d_cam_m)
    gate = known - p.gate_tau * p.tau_base_s * US + min(opening, 0.0) / slowest * US
    return texp, gate
