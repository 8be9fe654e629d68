"""One measured-vehicle record (``schemas.measured``) whatever measured the axle loads: the axle
kernel, a WIM controller or a site gateway give ``zhichao.MeasuredVehicle``'s fields in its
order, and the same vehicle reads the same from a controller as from a gateway's batch."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest

import schemas
from schemas.columns import unpack
from schemas.units import US
from sim.config import SimConfig
from sim.gateway import batches, pool_of, vehicles_of
from sim.traffic import CitySimulator
from streams.gateway import measured_row
from streams.stages import measure_controller, measure_passages

START_US = int(dt.datetime(2026, 11, 20, 9, tzinfo=dt.UTC).timestamp() * US)


SCHEMA = Path(schemas.__file__).parent / "zhichao.MeasuredVehicle.avsc"


def _fields() -> list[str]:
    return [f["name"] for f in json.loads(SCHEMA.read_text(encoding="utf-8"))["fields"]]


@pytest.fixture(scope="module")
def traffic(registry):
    return CitySimulator(SimConfig(vehicles=200, seed=6), registry).run()


@pytest.fixture(scope="module")
def gateway_batch(registry, traffic):
    batch = next(batches(pool_of(traffic.truth), registry, 20, 20, START_US, 100.0, seed=8))
    return schemas.decode_any_wire(batch.value)[1]


def test_raw_passages_make_the_record(registry, traffic):
    measured, _ = measure_passages(traffic.passages[:50], registry)
    assert measured
    for m in measured:
        assert list(m) == _fields()
        assert m["source"] == "raw" and m["axle_count"] == len(m["axle_loads_kg"])
        assert schemas.MEASURED_VEHICLE.decode(schemas.MEASURED_VEHICLE.encode(m)) == m


def test_a_gateway_row_is_the_controllers_record_of_the_same_vehicle(registry, gateway_batch):
    columns, rejected = unpack(gateway_batch, registry)
    assert not rejected
    controller, refused = measure_controller(vehicles_of(gateway_batch), registry)
    assert not refused and len(controller) == len(columns)
    for i, from_controller in enumerate(controller):
        row = measured_row(columns, i)
        assert list(row) == list(from_controller) == _fields()
        assert row["source"] == "gateway" and from_controller["source"] == "controller"
        assert row["gvw_kg"] == pytest.approx(from_controller["gvw_kg"])
        same = {k: v for k, v in row.items() if k not in ("source", "gvw_kg")}
        assert same == {k: from_controller[k] for k in same}
