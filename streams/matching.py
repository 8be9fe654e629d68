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
from collections import defaultdict
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


@dataclass
class SiteBuffer:
    vehicles: list[Entry] = field(default_factory=list)
    reads: list[Entry] = field(default_factory=list)
    vehicle_ids: set[str] = field(default_factory=set)  # what is buffered, against redelivery
    read_ids: set[str] = field(default_factory=set)
    seen_vehicle_us: int = 0  # input watermarks: latest event time per stream
    seen_read_us: int = 0
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

    def add_vehicle(self, vehicle: dict[str, Any], token: Any = None) -> None:
        buf = self.sites[vehicle["site_id"]]
        if vehicle["passage_id"] in buf.vehicle_ids:  # redelivered after a restart
            self.released.append(token)
            return
        buf.vehicle_ids.add(vehicle["passage_id"])
        if not buf.vehicles:
            buf.oldest_arrival_s = time.monotonic()
        buf.vehicles.append(Entry(vehicle, token))
        buf.seen_vehicle_us = max(buf.seen_vehicle_us, vehicle["ts_us"])

    def add_read(self, read: dict[str, Any], token: Any = None) -> None:
        if read["view"] not in ("front", "rear"):
            self.released.append(token)  # checkpoint sightings feed trajectories, not the join
            return
        buf = self.sites[read["site_id"]]
        if read["read_id"] in buf.read_ids:
            self.released.append(token)
            return
        buf.read_ids.add(read["read_id"])
        buf.reads.append(Entry(read, token))
        buf.seen_read_us = max(buf.seen_read_us, read["ts_us"])

    def _window(self, vehicle: dict[str, Any]) -> tuple[float, float]:
        """Earliest and latest time any camera of the site could capture this vehicle."""
        v = max(vehicle["speed_kmh"] / 3.6, 0.3)
        lo, hi = float(vehicle["ts_us"]), float(vehicle["last_axle_ts_us"])
        for cam in self.registry.cameras_of_site(vehicle["site_id"]):
            if cam.view not in ("front", "rear"):
                continue
            base = vehicle["last_axle_ts_us"] if cam.view == "rear" else vehicle["ts_us"]
            extra = self.params.rear_extra_m if cam.view == "rear" else 0.0
            t_exp = base + (cam.d_cam_m + extra) / v * US
            tau = (self.params.tau_base_s + self.params.tau_per_s * abs(cam.d_cam_m) / v) * US
            gate = self.params.gate_tau * tau
            lo, hi = min(lo, t_exp - gate), max(hi, t_exp + gate)
        return lo, hi + self.params.frame_gap_s * US

    def _cut(self, buf: SiteBuffer, windows: list[tuple[float, float, int]]) -> float | None:
        """The latest time no window crosses and every input is known up to, if any."""
        known_until = min(buf.seen_vehicle_us, buf.seen_read_us) - self.slack_s * US
        cut = None
        reach = -float("inf")
        for lo, hi, _ in windows:
            if reach < lo and reach < known_until and reach > -float("inf"):
                cut = reach  # no window crosses the end of those before this one
            reach = max(reach, hi)
        if reach < known_until:
            cut = reach
        return cut

    def ready(self, flush_all: bool = False) -> list[Ready]:
        """Take out every group that can be decided now."""
        out = []
        for buf in self.sites.values():
            if not buf.vehicles:
                horizon = buf.seen_read_us - READ_RETENTION_S * US
                old = [e for e in buf.reads if e.record["ts_us"] < horizon]
                self.released += [e.token for e in old]
                buf.reads = [e for e in buf.reads if e.record["ts_us"] >= horizon]
                buf.read_ids.difference_update(e.record["read_id"] for e in old)
                continue
            if flush_all or time.monotonic() - buf.oldest_arrival_s > self.max_wait_s:
                cut = float("inf")
            else:
                windows = sorted((*self._window(e.record), k) for k, e in enumerate(buf.vehicles))
                cut = self._cut(buf, windows)
                if cut is None:
                    continue
            ends = {id(e): self._window(e.record)[1] for e in buf.vehicles}
            take = [e for e in buf.vehicles if ends[id(e)] <= cut]
            buf.vehicles = [e for e in buf.vehicles if ends[id(e)] > cut]
            reads = [e for e in buf.reads if e.record["ts_us"] <= cut]
            buf.reads = [e for e in buf.reads if e.record["ts_us"] > cut]
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
