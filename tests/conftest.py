"""Shared fixtures: one simulated city run per session (deterministic by seed)."""

from __future__ import annotations

import hypothesis  # noqa: F401 - imported up front: its plugin imports it late otherwise, and
import pytest  # that late import has crashed CPython 3.11's compiler after a Faust test

from schemas.registry import load_registry
from sim.config import SimConfig
from sim.traffic import CitySimulator


@pytest.fixture(scope="session")
def registry():
    return load_registry()


@pytest.fixture(scope="session")
def city_traffic(registry):
    """2,000 passages of the example city at the default configuration."""
    return CitySimulator(SimConfig(vehicles=2000), registry).run()
