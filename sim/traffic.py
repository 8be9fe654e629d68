"""A city's traffic over a registry: WIM passages, camera reads, checkpoint sightings, heartbeats.

Deterministic by seed. Each weighed vehicle arrives at a weigh site in a lane at a speed; its raw
signals are synthesised for that site's sensor layout; front and rear cameras read its plates
through the OCR error model; checkpoint cameras up and down the road sight it on its trip.
Bypassers skip the weigh site and show up on the bypass road; coverers hide their plate at weigh
sites only; cloned plates are carried by two trucks at once.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from schemas.registry import Registry, Site
from schemas.units import US
from sim import plates as simplates
from sim.config import HOUR_WEIGHTS, WEEKDAY_WEIGHTS, SimConfig
from sim.signals import SensorLayout, make_calibration, synthesise
from sim.vehicles import HEAVY_CODES, Vehicle, draw_class, make_vehicle

REAR_EXTRA_M = 1.5  # the rear plate hangs about 1.5 m behind the last axle (plates.md M1)


@dataclass
class CityTraffic:
    passages: list[dict[str, Any]] = field(default_factory=list)
    reads: list[dict[str, Any]] = field(default_factory=list)
    heartbeats: list[dict[str, Any]] = field(default_factory=list)
    truth: list[dict[str, Any]] = field(default_factory=list)
    bypassers: list[str] = field(default_factory=list)  # plates that skipped a weigh site
    cloned: list[str] = field(default_factory=list)  # plates carried by two trucks
    end_us: int = 0


def _ts_us(moment: dt.datetime) -> int:
    return int(moment.timestamp() * US)


CHINA_OFFSET_S = 8 * 3600  # China time is UTC+8 all year


class _Identity:
    """Plates of one vehicle: the tractor/rigid plate (front) and the trailer plate (rear)."""

    def __init__(self, rng: np.random.Generator, vehicle: Vehicle, local_share: float):
        local = bool(rng.random() < local_share)
        heavy = vehicle.code in HEAVY_CODES or vehicle.code == "LT"
        nev = vehicle.code == "CAR" and rng.random() < 0.2
        self.front = simplates.new_plate(rng, local=local, nev=nev)
        self.colour = "yellow" if heavy else ("green" if nev else "blue")
        if vehicle.articulated:
            trailer_local = local if rng.random() < 0.8 else not local
            self.rear = simplates.new_plate(rng, local=trailer_local, trailer=True)
        else:
            self.rear = self.front


@dataclass(frozen=True)
class _Regular:
    """A truck that comes back: its class, its plates, and whether it overloads by habit."""

    code: str
    plates: _Identity
    habitual: bool
    home: Site | None = None  # the weigh site by its source (源头企业), if it loads at one


class CitySimulator:
    def __init__(self, config: SimConfig, registry: Registry):
        config.validate()
        self.config = config
        self.registry = registry
        self.rng = np.random.default_rng(config.seed)
        self.noise_scale = config.noise_scale()
        self.weigh_sites = registry.weigh_sites
        lanes = np.array([s.lanes for s in self.weigh_sites], dtype=float)
        self.site_weights = lanes / lanes.sum()
        # per source of the registry, the weigh site on its road nearest it: where a regular
        # truck that loads there is weighed first (one entry per source, so each gets trucks)
        self.source_sites = [
            min(on_road, key=lambda w: abs(w.km - src.km))
            for src in registry.sources.values()
            if (on_road := [w for w in self.weigh_sites if w.road == src.road])
        ]
        self.layouts: dict[str, SensorLayout] = {}
        self.calibrations = {}
        for site in self.weigh_sites:
            device = registry.wim_of_site(site.id)
            layout = SensorLayout(
                device.fs_hz,
                device.rows,
                device.segments,
                device.row_spacing_m,
                device.sensor_width_m,
            )
            self.layouts[site.id] = layout
            self.calibrations[site.id] = make_calibration(self.rng, layout, self.noise_scale)
        self.start_us = _ts_us(config.start)
        self._current_passage: str | None = None  # annotates site reads with their truth
        self._lane_free_us: dict[tuple[str, int], int] = {}
        self._last_capture_us: dict[str, int] = {}

    # -- trips -------------------------------------------------------------------------------
    def _speed_ms(self, site: Site, vehicle: Vehicle) -> float:
        if site.expressway:  # entrance weighing: low-speed platforms (domain.md §3.6)
            kmh = self.rng.uniform(5.0, 15.0)
        else:
            mean = 70.0 if vehicle.code == "CAR" else 58.0
            kmh = float(np.clip(self.rng.normal(mean, 10.0), 30.0, 95.0))
        return kmh / 3.6

    def _checkpoints_along(self, site: Site, upstream: bool) -> list[Site]:
        same_road = [c for c in self.registry.checkpoints if c.road == site.road]
        before = (
            (lambda c: c.km < site.km) if site.direction == "up" else (lambda c: c.km > site.km)
        )
        chosen = [c for c in same_road if before(c) == upstream]
        return sorted(chosen, key=lambda c: abs(c.km - site.km))

    def _road_speed_ms(self, road: str) -> float:
        return self.registry.roads[road].truck_speed_kmh / 3.6

    # -- cameras -----------------------------------------------------------------------------
    def _reads_of(
        self,
        plate: str,
        camera_id: str,
        site_id: str,
        lane: int,
        direction: str,
        view: str,
        ts_us: int,
        *,
        covered: bool,
        error_rate: float,
        colour: str,
    ) -> list[dict[str, Any]]:
        frames = 2 if self.rng.random() < self.config.second_frame_share else 1
        out = []
        for frame in range(frames):
            read = simplates.camera_read(
                self.rng,
                "" if covered else plate,
                error_rate=error_rate,
                unreadable_rate=self.config.unreadable_rate,
                confident_error_share=self.config.confident_error_share,
            )
            jitter = self.rng.normal(0.0, self.config.clock_jitter_s)
            t_read = ts_us + int((jitter + 0.04 * frame) * US)
            out.append(
                {
                    "read_id": f"{camera_id}:{t_read}:{frame}",
                    "camera_id": camera_id,
                    "site_id": site_id,
                    "lane": lane,
                    "direction": direction,
                    "view": view,
                    "ts_us": t_read,
                    "plate": read.plate,
                    "plate_color": colour if read.plate else "unknown",
                    "confidence": read.confidence,
                    "char_conf": read.char_conf or None,
                    "image_ref": f"img://{camera_id}/{t_read}.jpg",
                    "_correct": read.correct,
                    "_error": read.error_kind,
                    "_passage_id": self._current_passage,
                }
            )
        return out

    def _checkpoint_sightings(
        self,
        plate: str,
        colour: str,
        site: Site,
        t_site_us: int,
        traffic: CityTraffic,
        bypass: bool = False,
    ) -> None:
        """Checkpoint (卡口) sightings up and down the road; a covered plate is readable there,
        since coverers hide it at weigh sites only."""
        speed = self._road_speed_ms(site.road)
        for upstream in (True, False):
            for checkpoint in self._checkpoints_along(site, upstream)[:1]:
                if bypass and not upstream:
                    continue
                if self.rng.random() > 0.85:
                    continue
                dist_m = abs(checkpoint.km - site.km) * 1000.0
                offset = dist_m / speed * self.rng.uniform(0.9, 1.15)
                t = t_site_us + int((-offset if upstream else offset) * US)
                cam = f"{checkpoint.id}-CAM"
                traffic.reads.extend(
                    self._reads_of(
                        plate,
                        cam,
                        checkpoint.id,
                        0,
                        site.direction,
                        "checkpoint",
                        t,
                        covered=False,
                        error_rate=self.config.read_error_rate_front,
                        colour=colour,
                    )
                )
        if bypass:
            for checkpoint in self.registry.checkpoints:
                if checkpoint.bypass_of == site.road:
                    t = t_site_us + int(self.rng.uniform(300, 900) * US)
                    traffic.reads.extend(
                        self._reads_of(
                            plate,
                            f"{checkpoint.id}-CAM",
                            checkpoint.id,
                            0,
                            site.direction,
                            "checkpoint",
                            t,
                            covered=False,
                            error_rate=self.config.read_error_rate_front,
                            colour=colour,
                        )
                    )

    # -- one weighed vehicle -----------------------------------------------------------------
    def _passage(
        self,
        index: int,
        t_arrival_us: int,
        traffic: CityTraffic,
        vehicle: Vehicle,
        ident: _Identity,
        site: Site,
        covered: bool,
    ) -> None:
        rng, cfg = self.rng, self.config
        layout = self.layouts[site.id]
        device = self.registry.wim_of_site(site.id)
        lane = int(rng.integers(1, site.lanes + 1))
        # a lane holds one vehicle at a time: wait for the one ahead plus a headway
        t_arrival_us = max(t_arrival_us, self._lane_free_us.get((site.id, lane), 0))
        speed = self._speed_ms(site, vehicle)
        accel = 0.0
        behaviours = []
        if rng.random() < cfg.accelerating_share:
            accel = float(rng.choice([-1.0, 1.0]) * rng.uniform(0.8, 1.5))
            if accel < 0:
                accel = max(accel, -0.4 * speed**2 / 30.0)
            behaviours.append("accelerating")
        side_share = None
        if layout.segments == 2 and rng.random() < cfg.lane_change_share:
            side_share = np.full((layout.rows, 2), 0.5)
            half = layout.rows // 2
            side_share[:half] = [0.5, 0.0]  # one wheel track off this lane's sensors
            side_share[half:] = [0.5, 0.5]
            behaviours.append("lane_change")
        passage = synthesise(
            rng,
            layout,
            self.calibrations[site.id],
            vehicle.axle_loads_kg,
            vehicle.spacings_m,
            speed,
            vehicle.tyre_contact_m,
            self.noise_scale,
            accel_ms2=accel,
            side_share=side_share,
        )
        passage_id = f"{site.id}:{self.config.first_passage + index:07d}"
        self._current_passage = passage_id
        ts_us = t_arrival_us
        headway_s = self.config.min_headway_s + rng.exponential(1.0)
        self._lane_free_us[(site.id, lane)] = (
            ts_us + int(passage.n_samples / layout.fs_hz * US) + int(headway_s * US)
        )
        t_first = ts_us + int(passage.t_axle_us[0])
        t_last = ts_us + int(passage.t_axle_us[-1])
        speed_last = speed + accel * (t_last - t_first) / US
        traffic.passages.append(
            {
                "passage_id": passage_id,
                "site_id": site.id,
                "device_id": device.id,
                "lane": lane,
                "direction": site.direction,
                "ts_us": ts_us,
                "fs_hz": layout.fs_hz,
                "rows": layout.rows,
                "segments": layout.segments,
                "row_spacing_m": layout.row_spacing_m,
                "sensor_width_m": layout.sensor_width_m,
                "calib": [float(c) for c in self.calibrations[site.id].calib],
                "samples": passage.samples.astype("<i2").tobytes(),
                "temperature_c": float(np.round(rng.normal(14.0, 3.0), 1)),
                "tyres": None,
                "air_suspension": None,
            }
        )
        front_reads, rear_reads = [], []
        for camera in self.registry.cameras_of_site(site.id):
            if camera.lane != lane:
                continue
            if camera.view == "front":
                t_cam = self._in_lane_order(camera.id, t_first + int(camera.d_cam_m / speed * US))
                front_reads = self._reads_of(
                    ident.front,
                    camera.id,
                    site.id,
                    lane,
                    site.direction,
                    "front",
                    t_cam,
                    covered=covered,
                    error_rate=cfg.read_error_rate_front,
                    colour=ident.colour,
                )
            elif camera.view == "rear":
                t_cam = self._in_lane_order(
                    camera.id,
                    t_last + int((camera.d_cam_m + REAR_EXTRA_M) / max(speed_last, 0.5) * US),
                )
                rear_reads = self._reads_of(
                    ident.rear,
                    camera.id,
                    site.id,
                    lane,
                    site.direction,
                    "rear",
                    t_cam,
                    covered=covered,
                    error_rate=cfg.read_error_rate_rear,
                    colour=ident.colour,
                )
        traffic.reads.extend(front_reads + rear_reads)
        self._current_passage = None
        if vehicle.code in HEAVY_CODES:
            self._checkpoint_sightings(ident.front, ident.colour, site, t_first, traffic)
        front_candidates = front_reads + ([] if vehicle.articulated else rear_reads)
        traffic.truth.append(
            {
                "passage_id": passage_id,
                "site_id": site.id,
                "device_id": device.id,
                "lane": lane,
                "ts_us": ts_us,
                "first_axle_ts_us": t_first,
                "class": vehicle.code,
                "legal_class": vehicle.legal_class,
                "axle_count": vehicle.axle_count,
                "axle_loads_kg": [round(float(x), 1) for x in vehicle.axle_loads_kg],
                "axle_spacings_m": [round(float(x), 4) for x in vehicle.spacings_m],
                "gvw_kg": round(vehicle.gvw_kg, 1),
                "speed_kmh": round(speed * 3.6, 3),
                "accel_ms2": accel,
                "overloaded": vehicle.overloaded,
                "plate_front": ident.front,
                "plate_rear": ident.rear,
                "articulated": vehicle.articulated,
                "covered": covered,
                "behaviours": behaviours,
                "cert_valid": device.cert_valid_at(t_first),
                "accuracy_class": device.accuracy_class,
                "front_read_correct": any(r["_correct"] for r in front_candidates),
                "rear_read_correct": any(r["_correct"] for r in rear_reads),
                "read_errors": sorted({r["_error"] for r in front_reads + rear_reads} - {""}),
            }
        )

    def _in_lane_order(self, camera_id: str, t_cam_us: int) -> int:
        """No overtaking in a lane between the scale and a camera: a faster vehicle that would
        reach the capture line less than 1 s behind the one ahead slows down to keep that gap."""
        t_cam_us = max(t_cam_us, self._last_capture_us.get(camera_id, 0) + US)
        self._last_capture_us[camera_id] = t_cam_us
        return t_cam_us

    def _heartbeats(self, traffic: CityTraffic) -> None:
        rng, cfg = self.rng, self.config
        devices = [(d.id, d.site) for d in self.registry.wim_devices.values()] + [
            (c.id, c.site) for c in self.registry.cameras.values()
        ]
        span = max(traffic.end_us - self.start_us, int(cfg.heartbeat_interval_s * US))
        picks = rng.permutation(len(devices))
        outage = {devices[i][0] for i in picks[: cfg.outage_devices]}
        abnormal = {devices[i][0] for i in picks[cfg.outage_devices :][: cfg.abnormal_devices]}
        out_start = self.start_us + int(rng.uniform(0.2, 0.5) * span)
        out_end = out_start + int(cfg.outage_duration_s * US)
        step = int(cfg.heartbeat_interval_s * US)
        for device_id, site_id in devices:
            for t in range(self.start_us, self.start_us + span + 1, step):
                if device_id in outage and out_start <= t < out_end:
                    continue
                bad = device_id in abnormal and out_start <= t < out_end
                traffic.heartbeats.append(
                    {
                        "device_id": device_id,
                        "site_id": site_id,
                        "ts_us": t,
                        "status": "abnormal" if bad else "ok",
                        "detail": "通道信号异常 channel signal abnormal" if bad else None,
                        "temperature_c": None,
                    }
                )

    def _next_arrival(self, t_us: float) -> float:
        """The next vehicle's time: a Poisson stream at the city's rate, or with the day's and
        the week's rhythm (thinning: draw at the peak rate, keep with the moment's weight)."""
        rng, cfg = self.rng, self.config
        if not cfg.rhythm:
            return t_us + rng.exponential(1.0 / cfg.city_rate_per_s) * US
        peak = max(HOUR_WEIGHTS) * max(WEEKDAY_WEIGHTS)
        while True:
            t_us += rng.exponential(1.0 / (cfg.city_rate_per_s * peak)) * US
            local_s = t_us / US + CHINA_OFFSET_S
            hour, day = int(local_s // 3600 % 24), int(local_s // 86400)
            weight = HOUR_WEIGHTS[hour] * WEEKDAY_WEIGHTS[(day + 3) % 7]  # 1970-01-01: Thursday
            if rng.random() * peak < weight:
                return t_us

    def _regular(self, code: str, fleet: list[_Regular]) -> tuple[Vehicle, _Regular]:
        """A trip of one of the regulars: a new one while the fleet is not full (of this
        trip's class), else one drawn from it, loaded as its habit says."""
        rng, cfg = self.rng, self.config
        if len(fleet) < cfg.fleet_size:
            habitual = bool(rng.random() < cfg.habitual_share)
            vehicle = make_vehicle(rng, code, cfg, self._habit(habitual))
            home = None
            if self.source_sites and rng.random() < cfg.source_share:
                home = self.source_sites[int(rng.integers(len(self.source_sites)))]
            member = _Regular(code, _Identity(rng, vehicle, cfg.local_share), habitual, home)
            fleet.append(member)
            return vehicle, member
        member = fleet[int(rng.integers(len(fleet)))]
        return make_vehicle(rng, member.code, cfg, self._habit(member.habitual)), member

    def _habit(self, habitual: bool) -> bool | None:
        """Whether a regular's trip is over the limit: mostly for a habitual overloader, else
        as any truck (None: the city's share)."""
        if not habitual:
            return None
        return bool(self.rng.random() < self.config.habitual_overload)

    def run(self, progress: Iterator[int] | None = None) -> CityTraffic:
        """Simulate ``config.vehicles`` weighed passages plus bypassers and heartbeats."""
        rng, cfg = self.rng, self.config
        traffic = CityTraffic()
        t = float(self.start_us)
        cloned: list[_Identity] = []
        fleet: list[_Regular] = []
        for index in progress if progress is not None else range(cfg.vehicles):
            t = self._next_arrival(t)
            site = self.weigh_sites[int(rng.choice(len(self.weigh_sites), p=self.site_weights))]
            code = draw_class(rng, cfg)
            regular = code in HEAVY_CODES and cfg.fleet_size > 0 and rng.random() < cfg.fleet_share
            if regular:
                vehicle, member = self._regular(code, fleet)
                ident = member.plates
                if member.home is not None and rng.random() < cfg.home_site_share:
                    site = member.home  # loaded at its source: weighed at the site nearest it
            else:
                vehicle = make_vehicle(rng, code, cfg)
                ident = _Identity(rng, vehicle, cfg.local_share)
            heavy = vehicle.code in HEAVY_CODES
            clonable = heavy and not regular  # a regular keeps its own plates
            clones_left = len(cloned) + len(traffic.cloned) < cfg.cloned_plates
            if clonable and clones_left and index % 97 == 13:
                cloned.append(ident)
            elif clonable and cloned and index % 89 == 7:
                twin = cloned.pop(0)
                ident.front = twin.front  # a second truck with the same (cloned) tractor plate
                if not vehicle.articulated:
                    ident.rear = ident.front
                traffic.cloned.append(ident.front)
            if heavy and rng.random() < cfg.bypasser_share:
                evader = make_vehicle(rng, vehicle.code, cfg, force_overloaded=True)
                plates = _Identity(rng, evader, cfg.local_share)
                self._checkpoint_sightings(
                    plates.front, plates.colour, site, int(t), traffic, bypass=True
                )
                traffic.bypassers.append(plates.front)
            covered = heavy and bool(rng.random() < cfg.coverer_share)
            self._passage(index, int(t), traffic, vehicle, ident, site, covered)
        traffic.end_us = int(t) + 60 * US
        self._heartbeats(traffic)
        for records in (traffic.passages, traffic.reads, traffic.heartbeats):
            records.sort(key=lambda r: r["ts_us"])
        return traffic
