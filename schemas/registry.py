"""Load and validate a site and device registry (DESIGN §7) with clear errors.

``load_registry(path)`` returns a frozen :class:`Registry`; every problem is reported as
:class:`RegistryError` naming the file and the entry, e.g. ``example-city.yaml: devices[3]
(SX-...-WIM): cert_valid_to 2026-01-01 is before cert_valid_from 2026-06-01``.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from schemas.plate_grammar import authority_of

CITY_DIR = Path(__file__).resolve().parent / "cities"
EXAMPLE_CITY = CITY_DIR / "example-city.yaml"
VIEWS = ("front", "rear", "side", "checkpoint")
SITE_KINDS = ("weigh", "checkpoint")


class RegistryError(ValueError):
    """A registry entry that cannot be used."""


@dataclass(frozen=True)
class Road:
    id: str
    name: str
    kind: str
    length_km: float
    truck_speed_kmh: float


@dataclass(frozen=True)
class Site:
    id: str
    name: str
    kind: str
    authority: str
    road: str
    km: float
    direction: str
    expressway: bool
    lat: float
    lon: float
    lanes: int
    published: bool
    bypass_of: str | None = None


@dataclass(frozen=True)
class WimDevice:
    id: str
    site: str
    accuracy_class: float
    cert_no: str
    cert_valid_from: dt.date
    cert_valid_to: dt.date
    fs_hz: int
    rows: int
    segments: int
    row_spacing_m: float
    sensor_width_m: float

    def cert_valid_at(self, ts_us: int) -> bool:
        """Whether the 检定 certificate covers the (UTC) instant ``ts_us``, by China date."""
        day = _china_date(ts_us)
        return self.cert_valid_from <= day <= self.cert_valid_to

    @property
    def cert_from_us(self) -> int:
        return _china_day_start_us(self.cert_valid_from)

    @property
    def cert_to_us(self) -> int:
        """End of the last valid day (exclusive), UTC microseconds."""
        return _china_day_start_us(self.cert_valid_to + dt.timedelta(days=1))


@dataclass(frozen=True)
class Camera:
    id: str
    site: str
    view: str
    lane: int
    d_cam_m: float


@dataclass(frozen=True)
class InterceptionPoint:
    id: str
    name: str
    road: str
    km: float
    direction: str
    toll_lane: bool = False


@dataclass(frozen=True)
class SourceEnterprise:
    """A freight source (源头企业: quarry, concrete plant, port, logistics park) and the road
    it loads onto, at ``km``: trucks leaving it meet that road's weigh sites first."""

    id: str
    name: str
    kind: str
    road: str
    km: float


@dataclass(frozen=True)
class Unit:
    id: str
    name: str
    home: str
    travel_s: dict[str, float]


@dataclass(frozen=True)
class Registry:
    name: str
    policy: str
    path: Path
    roads: dict[str, Road]
    sites: dict[str, Site]
    wim_devices: dict[str, WimDevice]
    cameras: dict[str, Camera]
    interception_points: dict[str, InterceptionPoint]
    units: dict[str, Unit]
    raw: dict[str, Any] = field(repr=False, compare=False)
    sources: dict[str, SourceEnterprise] = field(default_factory=dict)

    @property
    def agency(self) -> str:
        """The enforcing agency named on notices (``agency`` in the registry file)."""
        name = self.raw.get("agency")
        if name:
            return str(name)
        return f"{self.name.split(' ')[0]}交通运输综合行政执法机构"

    @property
    def weigh_sites(self) -> list[Site]:
        return [s for s in self.sites.values() if s.kind == "weigh"]

    @property
    def checkpoints(self) -> list[Site]:
        return [s for s in self.sites.values() if s.kind == "checkpoint"]

    def wim_of_site(self, site_id: str) -> WimDevice:
        for device in self.wim_devices.values():
            if device.site == site_id:
                return device
        raise RegistryError(f"site {site_id} has no WIM device")

    def cameras_of_site(self, site_id: str) -> list[Camera]:
        return [c for c in self.cameras.values() if c.site == site_id]


CHINA = dt.timezone(dt.timedelta(hours=8))  # China Standard Time: the days of KPIs and limits


def _china_date(ts_us: int) -> dt.date:
    return dt.datetime.fromtimestamp(ts_us / 1e6, tz=CHINA).date()


def _china_day_start_us(day: dt.date) -> int:
    start = dt.datetime(day.year, day.month, day.day, tzinfo=CHINA)
    return int(start.timestamp()) * 1_000_000


class _Entry:
    """Typed access to one mapping; errors carry the file and the entry's path."""

    def __init__(self, filename: str, where: str, data: Any):
        if not isinstance(data, dict):
            raise RegistryError(f"{filename}: {where}: must be a mapping")
        self.filename, self.where, self.data = filename, where, data

    def fail(self, message: str) -> RegistryError:
        return RegistryError(f"{self.filename}: {self.where}: {message}")

    def text(self, key: str, default: str | None = None) -> str:
        value = self.data.get(key, default)
        if not isinstance(value, str) or not value:
            raise self.fail(f"{key} must be a non-empty string, got {value!r}")
        return value

    def number(self, key: str, *, positive: bool = False, default: float | None = None) -> float:
        value = self.data.get(key, default)
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not math.isfinite(value)
        ):
            raise self.fail(f"{key} must be a finite number, got {value!r}")
        if positive and value <= 0:
            raise self.fail(f"{key} must be positive, got {value!r}")
        return float(value)

    def integer(self, key: str, *, min_value: int = 0, default: int | None = None) -> int:
        value = self.data.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int) or value < min_value:
            raise self.fail(f"{key} must be a whole number >= {min_value}, got {value!r}")
        return value

    def flag(self, key: str, default: bool = False) -> bool:
        value = self.data.get(key, default)
        if not isinstance(value, bool):
            raise self.fail(f"{key} must be true or false, got {value!r}")
        return value

    def date(self, key: str) -> dt.date:
        value = self.data.get(key)
        if isinstance(value, dt.date):
            return value
        try:
            return dt.date.fromisoformat(str(value))
        except ValueError:
            raise self.fail(f"{key} must be a date YYYY-MM-DD, got {value!r}") from None


def _entries(data: dict[str, Any], key: str, filename: str) -> list[tuple[str, Any]]:
    value = data.get(key, [])
    if not isinstance(value, list):
        raise RegistryError(f"{filename}: {key} must be a list")
    out = []
    for i, item in enumerate(value):
        label = item.get("id") if isinstance(item, dict) else None
        out.append((f"{key}[{i}] ({label})", item))
    return out


def _unique(items: dict[str, Any], item_id: str, entry: _Entry) -> None:
    if item_id in items:
        raise entry.fail(f"duplicate id {item_id}")


def load_registry(path: str | Path = EXAMPLE_CITY) -> Registry:
    """Load a registry YAML file and check every cross-reference."""
    path = Path(path)
    name = path.name
    try:
        with open(path, encoding="utf-8") as fh:
            data = yaml.safe_load(fh)
    except OSError as exc:
        raise RegistryError(f"cannot read registry {path}: {exc.strerror}") from exc
    except yaml.YAMLError as exc:
        raise RegistryError(f"{name}: not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise RegistryError(f"{name}: the registry is a mapping at the top level")
    top = _Entry(name, "top level", data)

    roads: dict[str, Road] = {}
    for where, item in _entries(data, "roads", name):
        e = _Entry(name, where, item)
        rid = e.text("id")
        _unique(roads, rid, e)
        roads[rid] = Road(
            rid,
            e.text("name", rid),
            e.text("kind", "road"),
            e.number("length_km", positive=True),
            e.number("truck_speed_kmh", positive=True),
        )

    sites: dict[str, Site] = {}
    for where, item in _entries(data, "sites", name):
        e = _Entry(name, where, item)
        sid = e.text("id")
        _unique(sites, sid, e)
        kind = e.text("kind", "weigh")
        if kind not in SITE_KINDS:
            raise e.fail(f"kind must be one of {SITE_KINDS}, got {kind!r}")
        road = e.text("road")
        if roads and road not in roads:
            raise e.fail(f"road {road} is not in roads")
        bypass_of = item.get("bypass_of")
        if bypass_of is not None and bypass_of not in roads:
            raise e.fail(f"bypass_of {bypass_of} is not in roads")
        sites[sid] = Site(
            id=sid,
            name=e.text("name", sid),
            kind=kind,
            authority=e.text("authority"),
            road=road,
            km=e.number("km", default=0.0),
            direction=e.text("direction"),
            expressway=e.flag("expressway"),
            lat=e.number("lat"),
            lon=e.number("lon"),
            lanes=e.integer("lanes", min_value=1),
            published=e.flag("published", True),
            bypass_of=bypass_of,
        )
    if not sites:
        raise top.fail("sites must list at least one site")

    wim: dict[str, WimDevice] = {}
    cameras: dict[str, Camera] = {}
    for where, item in _entries(data, "devices", name):
        e = _Entry(name, where, item)
        did = e.text("id")
        if did in wim or did in cameras:
            raise e.fail(f"duplicate id {did}")
        site_id = e.text("site")
        if site_id not in sites:
            raise e.fail(f"site {site_id} is not in sites")
        kind = e.text("kind")
        if kind == "wim":
            if sites[site_id].kind != "weigh":
                raise e.fail(f"a WIM device needs a weigh site, {site_id} is a checkpoint")
            valid_from, valid_to = e.date("cert_valid_from"), e.date("cert_valid_to")
            if valid_to < valid_from:
                raise e.fail(f"cert_valid_to {valid_to} is before cert_valid_from {valid_from}")
            wim[did] = WimDevice(
                id=did,
                site=site_id,
                accuracy_class=e.number("accuracy_class", positive=True),
                cert_no=e.text("cert_no", "unknown"),
                cert_valid_from=valid_from,
                cert_valid_to=valid_to,
                fs_hz=e.integer("fs_hz", min_value=100, default=2000),
                rows=e.integer("rows", min_value=2, default=4),
                segments=e.integer("segments", min_value=1, default=2),
                row_spacing_m=e.number("row_spacing_m", positive=True, default=1.0),
                sensor_width_m=e.number("sensor_width_m", positive=True, default=0.05),
            )
        elif kind == "camera":
            view = e.text("view")
            if view not in VIEWS:
                raise e.fail(f"view must be one of {VIEWS}, got {view!r}")
            lane = e.integer("lane", min_value=0, default=0)
            if view != "checkpoint" and not 1 <= lane <= sites[site_id].lanes:
                raise e.fail(f"lane {lane} is not a lane of {site_id} (1..{sites[site_id].lanes})")
            cameras[did] = Camera(did, site_id, view, lane, e.number("d_cam_m", default=0.0))
        else:
            raise e.fail(f"kind must be wim or camera, got {kind!r}")
    for site in sites.values():
        if site.kind == "weigh" and sum(d.site == site.id for d in wim.values()) != 1:
            raise RegistryError(f"{name}: site {site.id} must have exactly one WIM device")
        if authority_of(site.authority) != site.authority:
            raise RegistryError(
                f"{name}: site {site.id}: {site.authority!r} is not a plate authority (e.g. 浙D)"
            )

    points: dict[str, InterceptionPoint] = {}
    for where, item in _entries(data, "interception_points", name):
        e = _Entry(name, where, item)
        pid = e.text("id")
        _unique(points, pid, e)
        road = e.text("road")
        if roads and road not in roads:
            raise e.fail(f"road {road} is not in roads")
        points[pid] = InterceptionPoint(
            pid,
            e.text("name", pid),
            road,
            e.number("km"),
            e.text("direction"),
            e.flag("toll_lane"),
        )

    units: dict[str, Unit] = {}
    for where, item in _entries(data, "units", name):
        e = _Entry(name, where, item)
        uid = e.text("id")
        _unique(units, uid, e)
        home = e.text("home")
        if home not in points:
            raise e.fail(f"home {home} is not an interception point")
        travel = item.get("travel_s", {})
        if not isinstance(travel, dict):
            raise e.fail("travel_s must map interception point ids to seconds")
        for pid, seconds in travel.items():
            if pid not in points:
                raise e.fail(f"travel_s names {pid}, which is not an interception point")
            if isinstance(seconds, bool) or not isinstance(seconds, int | float) or seconds < 0:
                raise e.fail(f"travel_s[{pid}] must be seconds >= 0, got {seconds!r}")
        units[uid] = Unit(uid, e.text("name", uid), home, {k: float(v) for k, v in travel.items()})

    sources: dict[str, SourceEnterprise] = {}
    for where, item in _entries(data, "sources", name):
        e = _Entry(name, where, item)
        sid = e.text("id")
        _unique(sources, sid, e)
        road = e.text("road")
        if road not in roads:
            raise e.fail(f"road {road} is not in roads")
        sources[sid] = SourceEnterprise(
            sid, e.text("name", sid), e.text("kind", "源头企业"), road, e.number("km")
        )

    return Registry(
        name=top.text("name", path.stem),
        policy=top.text("policy", "cn-62-2016"),
        path=path,
        roads=roads,
        sites=sites,
        wim_devices=wim,
        cameras=cameras,
        interception_points=points,
        units=units,
        raw=data,
        sources=sources,
    )
