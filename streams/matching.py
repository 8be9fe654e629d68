"""The match stage's buffers across sites, and when what they hold is known complete.

Each site's vehicles and reads wait in a ``streams.site_buffer.SiteBuffer`` until they can be
decided: at a cut (a gap in the site's traffic, ``SiteBuffer.split``), or earlier for the
vehicles whose reads are already final (``settled``, ``kernels.settle``). Those decided early
stay buffered, unacknowledged and out of the site's progress until a cut takes them — the join
of their group still needs them as rows — and that group's join must give them the same reads
(``Ready.early``; the agent counts any that differ). A worker reading a backlog
(``backlogged`` partitions) settles nothing early: its cuts come as fast.

A vehicle that has waited ``max_wait_s`` (a camera stream stalled, or no traffic behind it) is
decided with the reads it has. That wait is counted on ``clock``: in the worker, seconds during
which the broker answered (a frozen or unreachable broker is not a silent camera), and only
while the site's partitions are caught up (a worker reading a backlog is not waiting for
anything, it simply has not read the reads yet).

"Known up to": an input stream is one Kafka partition, read in publication order, and devices
publish within ``slack_s`` of capture, so any record on a partition — of any site — vouches that
the partition's older records have arrived; and a partition read to its end after newer records
were read on two others is complete up to their time (``vouch``, ``streams.vouching``).

Which camera can see which vehicle, and when, is the site join's (``join``: its tolerances, the
settings' ``join_*``), so that a cut or a settled vehicle agrees with the join that decides it.
The docs: docs/semantics.md, "When a weighing is decided".
"""

from __future__ import annotations

import time
from bisect import bisect_right
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from kernels.plates import JoinParams
from schemas.registry import Camera, Registry
from schemas.settings import Settings
from schemas.units import US
from streams.site_buffer import (
    INF,
    Entry,
    Matched,
    Ready,
    Record,
    SiteBuffer,
    by_time,
    settle_site,
)
from streams.stages import join_site_reads, read_ids_of

__all__ = ["BACKLOG_RECORDS", "Early", "MatchBuffers", "Ready"]

BACKLOG_RECORDS = 1000  # a partition this far behind is a backlog: its sites settle nothing early


@dataclass
class Early:
    """Vehicles whose reads are final although their site cannot be cut yet
    (``kernels.settle``): decided now, acknowledged with the group that later takes them.

    ``provisional``: heavy vehicles whose *front* reads are final while a rear camera's are
    not (a slow truck is seconds from its rear camera): what their verdict will most likely
    be, for an interception order ahead of it (预判), never a verdict; no rear reads."""

    vehicles: list[Record]
    matched: list[Matched]  # front, rear reads
    site_id: str
    provisional: bool = False


@dataclass
class MatchBuffers:
    registry: Registry
    max_wait_s: float = Settings.max_wait_s
    slack_s: float = Settings.publish_slack_s  # devices publish within this much of capture
    read_retention_s: float = Settings.read_retention_s
    join: JoinParams = field(default_factory=JoinParams)
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
    # redelivered vehicles their site had decided: a crash can fall between the verdicts'
    # write and their send to ``vehicles.verdicts``, so their verdicts are announced again
    decided_again: list[str] = field(default_factory=list)
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

    def add_vehicle(self, vehicle: Record, token: Any = None, stream: Hashable = None) -> None:
        """Buffer a measured vehicle; ``stream`` is the input it came on (topic, partition)."""
        buf = self._site(vehicle["site_id"])
        buf.vehicle_stream = stream if stream is not None else ("vehicles", vehicle["site_id"])
        self._check_late(buf.vehicle_stream, vehicle["ts_us"], vehicle["device_id"])
        self._advance(buf.vehicle_stream, vehicle["ts_us"])
        key = (vehicle["ts_us"], vehicle["passage_id"])
        if vehicle["passage_id"] in buf.vehicle_ids or key <= buf.done_vehicle:  # redelivered
            if key <= buf.done_vehicle:
                self.stale += 1
                self.decided_again.append(vehicle["passage_id"])
            self.released.append(token)
            return
        buf.vehicle_ids.add(vehicle["passage_id"])
        if not buf.vehicles:
            buf.oldest_arrival_s = self.clock()
        i = bisect_right(buf.vehicle_keys, key)
        buf.vehicle_keys.insert(i, key)
        buf.vehicles.insert(i, Entry(vehicle, token, *self._windows(vehicle)))

    def add_read(self, read: Record, token: Any = None, stream: Hashable = None) -> None:
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

    def _windows(self, vehicle: Record) -> tuple[tuple[float, ...], tuple[float, ...]]:
        """Per camera of the site: earliest and latest time it could capture this vehicle; none
        (an empty window) for a camera the join never gives it: more than ``max_lane_gap``
        lanes away."""
        p = self.join
        v = max(vehicle["speed_kmh"] / 3.6, p.min_speed_ms)
        lo, hi = [], []
        for cam in self._cameras(vehicle["site_id"]):
            if abs(cam.lane - vehicle["lane"]) > p.max_lane_gap:
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
                k, own_reads = self._overdue(buf, now)
                if k == 0:
                    continue
            else:
                known = self._known_until(buf)
                state = (known, len(buf.vehicles), len(buf.read_ids))
                if state == buf.tried:
                    continue  # nothing new since the last attempt
                k, cuts = buf.split(known, self.join.frame_gap_s * US)
                if k == 0:
                    buf.tried = state
                    continue
            out.append(buf.take(k, cuts, own_reads, now))
        return out

    def _overdue(self, buf: SiteBuffer, now: float) -> tuple[int, set[str] | None]:
        """A site that waited ``max_wait_s`` without a gap in its traffic (a busy toll
        entrance may have none for minutes): its leading vehicles whose capture windows all
        closed before what is known — every read they can have is in — with the ids of the
        reads a join of everything buffered gives them, so that the vehicles still waiting keep
        theirs. If none has closed (an input has gone quiet): all of them, with every read
        buffered (``None``). While what is known still moves on, no input has gone quiet:
        the leading vehicle's window is still open (a slow truck's reaches far), and the site
        waits for it (``k`` = 0) until nothing new has been known for ``max_wait_s``."""
        known = self._known_until(buf)
        hi = np.array([e.hi for e in buf.vehicles]).reshape(len(buf.vehicles), -1)
        closed = np.all(np.maximum.accumulate(hi, axis=0) < known, axis=1)
        k = int(closed.sum())  # a prefix: the running maximum only grows
        if k == 0:
            if known > buf.overdue_known:
                buf.overdue_known, buf.overdue_known_moved_s = known, now
            if now - buf.overdue_known_moved_s <= self.max_wait_s:
                return 0, None
            return len(buf.vehicles), None
        entries = sorted(
            (e for reads in buf.reads.values() for e in reads.entries if e.record["ts_us"] < known),
            key=lambda e: by_time(e.record),
        )
        matched = join_site_reads(
            [e.record for e in buf.vehicles], [e.record for e in entries], self.registry, self.join
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
            out += self._settled_site(site_id, buf, known, foresee_from_kg)
        return out

    def _settled_site(
        self, site_id: str, buf: SiteBuffer, known: float, foresee_from_kg: float | None
    ) -> list[Early]:
        """``settled`` for one site whose inputs are known until ``known``."""
        gap = self.join.frame_gap_s * US
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
            return []
        ok, ok_front, matched = settle_site(buf, self._cameras(site_id), known, self.join)
        heavy_ids = {e.record["passage_id"] for e in heavy}
        take, ahead = [], []
        for e, good, good_front, m in zip(buf.vehicles, ok, ok_front, matched, strict=True):
            pid = e.record["passage_id"]
            if good and pid not in buf.early:
                take.append((e.record, m))
            elif good_front and m[0] and pid in heavy_ids:
                ahead.append((e.record, (m[0], [])))
        out = []
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

    def restore(self, progress: dict[str, dict[str, Any]]) -> None:
        """Take up the progress of sites as written with their verdicts (after a restart or a
        rebalance), never moving a site back."""
        for site_id, p in progress.items():
            self._site(site_id).restore(p)

    def _expire_reads(self, buf: SiteBuffer) -> None:
        """Reads with no vehicle to wait for are released once both of the site's inputs are
        ``read_retention_s`` past them. While a backlog is read, one topic can run far ahead of
        the other: reads are not given up on while the site's weighings are still to come."""
        if buf.vehicle_stream is None:
            if self.lagging:
                return
            horizon = self.marks.get(buf.read_stream, 0) - self.read_retention_s * US
        else:
            horizon = self._known_until(buf) - self.read_retention_s * US
        self.released += buf.expire_reads(horizon)

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

    def take_decided_again(self) -> list[str]:
        passage_ids, self.decided_again = self.decided_again, []
        return passage_ids

    def pending(self) -> int:
        return sum(len(b.vehicles) for b in self.sites.values())
