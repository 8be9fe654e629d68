"""Every knob of the simulator in one place, with the reasoning behind the defaults."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from schemas.registry import CHINA

# Share of all weighed vehicles by class (cars and light trucks included: mainline WIM weighs
# everything, domain.md §5.2). LT = light 2-axle truck below 4.5 t.
DEFAULT_MIX: dict[str, float] = {
    "CAR": 0.38,
    "LT": 0.10,
    "T2": 0.14,
    "T3": 0.06,
    "C3": 0.02,
    "T4": 0.06,
    "C4": 0.03,
    "C5": 0.06,
    "C6": 0.13,
    "C6S": 0.02,
}

# COST 323 class name -> GVW tolerance δ in % (domain.md §2.1).
COST323_CLASSES = {"A": 5.0, "B+": 7.0, "B": 10.0, "C": 15.0, "D+": 20.0, "D": 25.0}


# Weights of the city's rate by hour of day (China time) and by weekday (Monday first), their
# means 1: freight runs day and night, with its peaks in the morning and the late afternoon, and
# weekends carry less of it than weekdays. An assumed shape for the simulation, not a measured
# one: no source in reference/ gives a city's hourly truck counts.
HOUR_WEIGHTS = (
    0.75, 0.7, 0.7, 0.7, 0.75, 0.85, 1.0, 1.2, 1.3, 1.3, 1.2, 1.1,
    1.05, 1.05, 1.1, 1.15, 1.2, 1.25, 1.15, 1.0, 0.95, 0.9, 0.85, 0.8,
)  # fmt: skip
WEEKDAY_WEIGHTS = (1.06, 1.06, 1.06, 1.06, 1.06, 0.9, 0.8)

ARCHIVE_START = dt.datetime(2026, 11, 20, 8, 0, tzinfo=CHINA)


def archive_age_s(now_s: float, start: dt.datetime = ARCHIVE_START) -> float:
    """How old traffic simulated from ``start`` (the default: a fixed day, so that ids, days and
    figures are reproducible) is at ``now_s``, with a month to spare for the simulated days
    after it: a worker fed that traffic must accept inputs this old (``max_event_age_s``)."""
    return now_s - start.timestamp() + 30 * 24 * 3600


@dataclass(frozen=True)
class SimConfig:
    seed: int = 20261122
    vehicles: int = 2000
    first_passage: int = 0  # passage numbers start here: runs fed one after another keep ids unique
    start: dt.datetime = ARCHIVE_START
    city_rate_per_s: float = 2.0  # weighed vehicles per second over the whole city
    min_headway_s: float = 1.0  # gap between a vehicle leaving the sensors and the next arriving
    mix: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_MIX))
    overloaded_share: float = 0.08  # of heavy trucks (T2 and up): true GVW above the limit
    overload_mean_excess: float = 0.18  # mean relative excess of overloaded trucks (exponential)
    overload_max_excess: float = 1.0  # tail up to +100 %
    cost323_class: str = "B+"  # accuracy of the raw signals
    # Driving behaviour (fractions of weighed vehicles).
    accelerating_share: float = 0.01
    lane_change_share: float = 0.01
    # OCR (plates.md §2): per read, the chance it is not the true plate, by view.
    read_error_rate_front: float = 0.06
    read_error_rate_rear: float = 0.12  # double-row yellow rear plates are harder (§2.4)
    unreadable_rate: float = 0.03
    second_frame_share: float = 0.15  # a camera sends a second read of the same vehicle
    confident_error_share: float = 0.05  # misreads whose changed characters still look confident
    clock_jitter_s: float = 0.05
    # Evasion and fraud (fractions of heavy trucks).
    coverer_share: float = 0.005  # plate covered at weigh sites, readable at checkpoints
    bypasser_share: float = 0.01  # leaves the road before a weigh site, uses the bypass road
    cloned_plates: int = 3  # pairs of trucks sharing one plate (套牌)
    # Regulars: heavy trucks that come back (the same plates and class on every trip). Off by
    # default (every vehicle new); a simulated quarter turns them on to have repeat offenders.
    fleet_size: int = 0  # regular trucks in the city
    fleet_share: float = 0.0  # of heavy trucks, the share that is one of the regulars
    habitual_share: float = 0.2  # of regulars, those who overload on most trips
    habitual_overload: float = 0.7  # the chance a habitual overloader is over the limit
    source_share: float = 0.5  # of regulars, those that load at a source (源头企业) of the registry
    home_site_share: float = 0.8  # of their trips, those weighed first at the site by the source
    # The rhythm of a day and a week (a simulated quarter): the city's rate is scaled by the
    # hour's and the weekday's weight below. Off by default: a steady rate.
    rhythm: bool = False
    local_share: float = 0.62  # plates issued by the city's own authority (浙D)
    # Device health.
    heartbeat_interval_s: float = 60.0
    outage_devices: int = 1
    outage_duration_s: float = 600.0
    abnormal_devices: int = 1

    def noise_scale(self) -> float:
        """Error scale relative to COST 323 B+ (δ = 7 %)."""
        try:
            return COST323_CLASSES[self.cost323_class] / 7.0
        except KeyError:
            raise ValueError(
                f"unknown COST 323 class {self.cost323_class!r}; use one of {list(COST323_CLASSES)}"
            ) from None

    def validate(self) -> None:
        if self.vehicles < 0:
            raise ValueError("vehicles must be >= 0")
        if abs(sum(self.mix.values()) - 1.0) > 1e-6:
            raise ValueError(f"the class mix must sum to 1, it sums to {sum(self.mix.values())}")
        for name in ("overloaded_share", "read_error_rate_front", "read_error_rate_rear"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"{name} must be within [0, 1]")
        self.noise_scale()


def days_of_traffic(days: int, per_day: int) -> dict[str, Any]:
    """``SimConfig`` settings for ``days`` of traffic at ``per_day`` weighed vehicles a day
    (``zhichao simulate --days``): the rhythm of day and week, a fleet of regular trucks (a third
    of a day's vehicles, 40 % of the heavy trips: the repeat offenders of a 通报), and a heartbeat
    an hour from each device rather than a minute (a quarter of them would be millions)."""
    return {
        "vehicles": days * per_day,
        "city_rate_per_s": per_day / 86400.0,
        "rhythm": True,
        "fleet_size": max(10, per_day // 3),
        "fleet_share": 0.4,
        "heartbeat_interval_s": 3600.0,
    }
