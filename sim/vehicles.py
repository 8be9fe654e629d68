"""Vehicle layouts and loads: axle spacings, static axle loads and the truth of each vehicle.

Each class has the configurations Chinese trucks of that axle count come in (GB 1589-2016),
each with the real spread of its geometry: tractor wheelbases, short and long couplings from the
drive group to the trailer's axles, tandem and tridem spreads, twin steers, drawbar and
centre-axle trailers. ``docs/vehicles.md`` gives the ranges and where they come from. Within a
group the spacings stay below 2.1 m and between groups above 2.7 m, so every simulated vehicle
is read as its configuration without the tolerance of the policy's classification (2.4 m
± 0.3 m), and its simulated class is its legal class.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sim.config import SimConfig


@dataclass(frozen=True)
class Layout:
    code: str  # simulator class code (a policy class, or CAR / LT)
    legal_class: str | None  # policy class code, None for vehicles the table does not cover
    spacings_m: tuple[tuple[float, float], ...]  # uniform range per spacing
    load_shares: tuple[float, ...]  # share of GVW per axle when loaded
    tare_kg: tuple[float, float]
    limit_kg: float  # the table limit, used to place loads around it
    articulated: bool  # carries a separate trailer plate (挂)
    tyre_contact_m: float
    name: str = ""  # the configuration, as docs/vehicles.md names it


# spacing ranges shared by the configurations (metres)
STEER_TWIN = (1.70, 2.00)  # 双转向: first to second steer axle
TANDEM = (1.30, 1.45)  # drive or trailer tandem (1.30-1.45 m)
TRIDEM = (1.30, 1.36)  # semitrailer tridem (1310 / 1360 mm)
TRACTOR_4X2 = (3.00, 4.20)  # 4×2 tractor wheelbase
TRACTOR_6X4 = (2.90, 3.60)  # 6×4 tractor: steer to first drive axle
TRACTOR_6X2_TWIN = (2.80, 3.40)  # twin-steer 6×2 tractor: second steer to drive axle
COUPLING_SEMI = (3.00, 8.50)  # drive group to first semitrailer axle: short to long couplings
COUPLING_DRAWBAR = (3.00, 5.00)  # truck's last axle to the trailer's first
TRAILER_WHEELBASE = (3.00, 5.50)  # a drawbar trailer's own wheelbase

LAYOUTS: dict[str, tuple[Layout, ...]] = {
    "CAR": (Layout("CAR", None, ((2.45, 2.95),), (0.55, 0.45), (1100, 2300), 3500, False, 0.15),),
    "LT": (Layout("LT", "T2", ((2.6, 3.4),), (0.40, 0.60), (1800, 2600), 4500, False, 0.17),),
    "T2": (
        Layout(
            "T2", "T2", ((3.2, 6.2),), (0.33, 0.67), (5500, 8000), 18000, False, 0.22, "4×2 货车"
        ),
    ),
    "T3": (
        Layout(
            "T3",
            "T3",
            ((3.8, 5.8), TANDEM),
            (0.24, 0.38, 0.38),
            (9000, 12000),
            25000,
            False,
            0.22,
            "6×4 货车",
        ),
        Layout(
            "T3",
            "T3",
            (STEER_TWIN, (3.8, 5.5)),
            (0.30, 0.30, 0.40),
            (9000, 11500),
            25000,
            False,
            0.22,
            "6×2 双转向货车",
        ),
    ),
    "C3": (
        Layout(
            "C3",
            "C3",
            (TRACTOR_4X2, COUPLING_SEMI),
            (0.22, 0.40, 0.38),
            (9500, 12000),
            27000,
            True,
            0.22,
            "4×2 牵引车 + 一轴半挂车",
        ),
    ),
    "T4": (
        Layout(
            "T4",
            "T4",
            (STEER_TWIN, (3.8, 5.5), TANDEM),
            (0.19, 0.19, 0.31, 0.31),
            (11000, 14000),
            31000,
            False,
            0.22,
            "8×4 双转向货车",
        ),
    ),
    "C4": (
        Layout(
            "C4",
            "C4",
            (TRACTOR_4X2, COUPLING_SEMI, TANDEM),
            (0.16, 0.30, 0.27, 0.27),
            (12000, 14500),
            36000,
            True,
            0.22,
            "4×2 牵引车 + 二轴半挂车",
        ),
        Layout(
            "C4",
            "C4",
            (TRACTOR_6X4, TANDEM, COUPLING_SEMI),
            (0.17, 0.27, 0.27, 0.29),
            (12500, 15000),
            36000,
            True,
            0.22,
            "6×4 牵引车 + 一轴半挂车",
        ),
        Layout(
            "C4",
            "C4",
            ((3.5, 5.5), COUPLING_DRAWBAR, TRAILER_WHEELBASE),
            (0.18, 0.32, 0.25, 0.25),
            (11000, 13500),
            36000,
            True,
            0.22,
            "4×2 货车 + 二轴全挂车",
        ),
    ),
    "C5": (
        Layout(
            "C5",
            "C5",
            (TRACTOR_6X4, TANDEM, COUPLING_SEMI, TANDEM),
            (0.14, 0.22, 0.22, 0.21, 0.21),
            (14000, 16500),
            43000,
            True,
            0.22,
            "6×4 牵引车 + 二轴半挂车",
        ),
        Layout(
            "C5",
            "C5",
            (TRACTOR_4X2, COUPLING_SEMI, TRIDEM, TRIDEM),
            (0.15, 0.28, 0.19, 0.19, 0.19),
            (13500, 16000),
            43000,
            True,
            0.22,
            "4×2 牵引车 + 三轴半挂车",
        ),
        Layout(
            "C5",
            "C5",
            ((3.8, 5.5), TANDEM, COUPLING_DRAWBAR, TRAILER_WHEELBASE),
            (0.14, 0.22, 0.22, 0.21, 0.21),
            (14000, 16500),
            43000,
            True,
            0.22,
            "6×4 货车 + 二轴全挂车",
        ),
    ),
    "C6": (
        Layout(
            "C6",
            "C6",
            (TRACTOR_6X4, TANDEM, COUPLING_SEMI, TRIDEM, TRIDEM),
            (0.12, 0.18, 0.18, 0.173, 0.173, 0.174),
            (15000, 17500),
            49000,
            True,
            0.22,
            "6×4 牵引车 + 三轴半挂车",
        ),
        Layout(
            "C6",
            "C6",
            ((3.8, 5.5), TANDEM, COUPLING_DRAWBAR, TRAILER_WHEELBASE, TANDEM),
            (0.12, 0.18, 0.18, 0.18, 0.17, 0.17),
            (15500, 18000),
            49000,
            True,
            0.22,
            "6×4 货车 + 三轴全挂车",
        ),
    ),
    "C6S": (
        Layout(
            "C6S",
            "C6S",
            (STEER_TWIN, TRACTOR_6X2_TWIN, COUPLING_SEMI, TRIDEM, TRIDEM),
            (0.13, 0.13, 0.22, 0.173, 0.173, 0.174),
            (14500, 17000),
            46000,
            True,
            0.22,
            "6×2 双转向牵引车 + 三轴半挂车",
        ),
    ),
}

HEAVY_CODES = frozenset(c for c in LAYOUTS if c not in ("CAR", "LT"))


@dataclass(frozen=True)
class Vehicle:
    code: str
    legal_class: str | None
    spacings_m: np.ndarray  # float64 [n_axles - 1]
    axle_loads_kg: np.ndarray  # float64 [n_axles], static
    articulated: bool
    overloaded: bool  # true GVW above the table limit (simulated truth)
    tyre_contact_m: float

    @property
    def gvw_kg(self) -> float:
        return float(self.axle_loads_kg.sum())

    @property
    def axle_count(self) -> int:
        return int(self.axle_loads_kg.size)


def draw_class(rng: np.random.Generator, config: SimConfig) -> str:
    codes = list(config.mix)
    probs = np.array([config.mix[c] for c in codes])
    return codes[int(rng.choice(len(codes), p=probs / probs.sum()))]


def make_vehicle(
    rng: np.random.Generator, code: str, config: SimConfig, force_overloaded: bool | None = None
) -> Vehicle:
    """A vehicle of class ``code`` with its spacings and static axle loads."""
    layouts = LAYOUTS[code]
    layout = layouts[int(rng.integers(len(layouts)))]
    spacings = np.array([rng.uniform(lo, hi) for lo, hi in layout.spacings_m])
    tare = rng.uniform(*layout.tare_kg)
    limit = layout.limit_kg
    overloaded = False
    if code in HEAVY_CODES:
        overloaded = (
            bool(rng.random() < config.overloaded_share)
            if force_overloaded is None
            else force_overloaded
        )
    if overloaded:
        excess = min(config.overload_max_excess, rng.exponential(config.overload_mean_excess))
        gvw = limit * (1.0 + max(excess, 0.002))
    else:
        state = rng.random()
        if state < 0.3:
            gvw = tare * rng.uniform(1.0, 1.1)  # empty
        else:
            gvw = rng.uniform(max(tare, 0.55 * limit), limit)  # loaded up to the limit
        gvw = min(gvw, limit)
    shares = np.array(layout.load_shares) * rng.uniform(0.92, 1.08, size=len(layout.load_shares))
    shares /= shares.sum()
    loads = gvw * shares
    return Vehicle(
        code=code,
        legal_class=layout.legal_class,
        spacings_m=spacings,
        axle_loads_kg=loads,
        articulated=layout.articulated,
        overloaded=overloaded,
        tyre_contact_m=layout.tyre_contact_m,
    )
