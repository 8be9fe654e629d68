"""Traffic simulator: WIM passages, camera reads and heartbeats of a city, with ground truth."""

from sim.config import SimConfig
from sim.traffic import CitySimulator, CityTraffic

__all__ = ["CitySimulator", "CityTraffic", "SimConfig"]
