"""Site gateways of the batched mode (``zhichao.VehicleBatch``): what a gateway that weighs and
reads plates itself would publish, one message per lane per ``window_s``.

Vehicles are drawn from a pool of simulated trucks (``sim.traffic`` ground truth: classes,
overloads, plates, read errors), with the gateway's WIM error (its accuracy class) added to
every axle, so that any number of batches can be made quickly; each row gets its own passage
id and time. The same vehicles can also be written one per message (``zhichao.WimVehicle``),
which is what the per-vehicle baselines of the benchmark read.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

import schemas
from schemas.columns import MAX_AXLES, join_text, split_text
from schemas.registry import Registry
from schemas.units import US
from sim.plates import misread


@dataclass(frozen=True)
class Pool:
    """Simulated vehicles as columns (weigh-site passages only)."""

    site_id: list[str]
    lane: np.ndarray
    axle_count: np.ndarray
    axle_loads_kg: np.ndarray  # [n, MAX_AXLES]
    axle_spacings_m: np.ndarray  # [n, MAX_AXLES - 1]
    speed_kmh: np.ndarray
    plate_front: list[str]  # as the gateway read them ('' unread)
    plate_rear: list[str]
    front_confidence: np.ndarray
    rear_confidence: np.ndarray

    def __len__(self) -> int:
        return len(self.site_id)


def truth_rows(truth: list[dict]) -> list[dict]:
    """The vehicles of a simulation's ground truth that a gateway reports, in ``pool_of``'s
    row order."""
    return [t for t in truth if 2 <= t["axle_count"] <= MAX_AXLES]


def pool_of(truth: list[dict], seed: int = 0) -> Pool:
    """The vehicles of a simulation's ground truth, with the gateway's own plate reads."""
    rng = np.random.default_rng(seed)
    rows = truth_rows(truth)
    n = len(rows)
    loads = np.zeros((n, MAX_AXLES))
    spacings = np.zeros((n, MAX_AXLES - 1))
    fronts, rears, cf, cr = [], [], np.zeros(n), np.zeros(n)
    for i, t in enumerate(rows):
        k = t["axle_count"]
        loads[i, :k] = t["axle_loads_kg"]
        spacings[i, : k - 1] = t["axle_spacings_m"]
        for plate, correct, out, conf in (
            (t["plate_front"], t["front_read_correct"], fronts, cf),
            (t["plate_rear"], t["rear_read_correct"], rears, cr),
        ):
            if t["covered"] or rng.random() < 0.03:
                out.append("")
                continue
            out.append(plate if correct else misread(rng, plate))
            conf[i] = rng.uniform(0.9, 0.999) if correct else rng.uniform(0.5, 0.95)
    return Pool(
        site_id=[t["site_id"] for t in rows],
        lane=np.array([t["lane"] for t in rows]),
        axle_count=np.array([t["axle_count"] for t in rows]),
        axle_loads_kg=loads,
        axle_spacings_m=spacings,
        speed_kmh=np.array([t["speed_kmh"] for t in rows]),
        plate_front=fronts,
        plate_rear=rears,
        front_confidence=cf,
        rear_confidence=cr,
    )


@dataclass(frozen=True)
class Batch:
    key: bytes
    value: bytes  # Confluent-framed VehicleBatch
    batch_id: str
    vehicles: int


def batches(
    pool: Pool,
    registry: Registry,
    vehicles: int,
    per_batch: int,
    start_us: int,
    rate_per_s: float,
    seed: int = 1,
    prefix: str = "gw",
) -> Iterator[Batch]:
    """``vehicles`` rows in batches of ``per_batch`` per (site, lane), timed at ``rate_per_s``
    vehicles per second over the whole city from ``start_us``. WIM error: each axle off by a
    normal error of a third of the device's accuracy class (in %)."""
    rng = np.random.default_rng(seed)
    lanes = sorted({(s, int(lane)) for s, lane in zip(pool.site_id, pool.lane, strict=True)})
    of_lane = {
        sl: np.flatnonzero((np.array(pool.site_id) == sl[0]) & (pool.lane == sl[1])) for sl in lanes
    }
    device_of = {d.site: d for d in registry.wim_devices.values()}
    made, seq, t_us = 0, 0, float(start_us)
    while made < vehicles:
        site, lane = lanes[seq % len(lanes)]
        m = min(per_batch, vehicles - made)
        idx = rng.choice(of_lane[(site, lane)], size=m)
        device = device_of[site]
        k = pool.axle_count[idx]
        sigma = device.accuracy_class / 100 / 3
        loads = pool.axle_loads_kg[idx] * (1 + rng.normal(0, sigma, (m, MAX_AXLES)))
        gap = 1e6 / rate_per_s
        ts = (t_us + np.arange(m) * gap * len(lanes)).astype(np.int64)
        speed = pool.speed_kmh[idx]
        length = pool.axle_spacings_m[idx].sum(axis=1)
        last = ts + (length / np.maximum(speed / 3.6, 0.1) * US).astype(np.int64)
        keep = np.arange(MAX_AXLES) < k[:, None]
        keep_gap = np.arange(MAX_AXLES - 1) < (k - 1)[:, None]
        batch_id = f"{prefix}-{device.id}-{lane}-{seq:09d}"
        record = {
            "batch_id": batch_id,
            "site_id": site,
            "device_id": device.id,
            "lane": lane,
            "direction": registry.sites[site].direction,
            "sent_us": int(ts[-1]),
            "count": m,
            "passage_ids": join_text([f"{batch_id}:{j}" for j in range(m)]),
            "ts_us": ts.astype("<i8").tobytes(),
            "last_axle_ts_us": last.astype("<i8").tobytes(),
            "speed_kmh": speed.astype("<f4").tobytes(),
            "axle_count": k.astype("u1").tobytes(),
            "axle_loads_kg": np.maximum(loads[keep], 0).astype("<f4").tobytes(),
            "axle_spacings_m": pool.axle_spacings_m[idx][keep_gap].astype("<f4").tobytes(),
            "plate_front": join_text([pool.plate_front[i] for i in idx]),
            "plate_rear": join_text([pool.plate_rear[i] for i in idx]),
            "front_confidence": pool.front_confidence[idx].astype("<f4").tobytes(),
            "rear_confidence": pool.rear_confidence[idx].astype("<f4").tobytes(),
        }
        yield Batch(site.encode(), schemas.VEHICLE_BATCH.encode_wire(record), batch_id, m)
        made += m
        seq += 1
        t_us += gap * m


def vehicles_of(batch: dict) -> list[dict]:
    """The rows of a decoded ``VehicleBatch`` as ``WimVehicle`` records (one message each)."""
    n = batch["count"]
    k = np.frombuffer(batch["axle_count"], "u1").astype(int)
    loads = np.frombuffer(batch["axle_loads_kg"], "<f4")
    gaps = np.frombuffer(batch["axle_spacings_m"], "<f4")
    ts = np.frombuffer(batch["ts_us"], "<i8")
    last = np.frombuffer(batch["last_axle_ts_us"], "<i8")
    speed = np.frombuffer(batch["speed_kmh"], "<f4")
    ids = split_text(batch["passage_ids"])
    out, a, g = [], 0, 0
    for i in range(n):
        out.append(
            {
                "passage_id": ids[i],
                "site_id": batch["site_id"],
                "device_id": batch["device_id"],
                "lane": batch["lane"],
                "direction": batch["direction"],
                "ts_us": int(ts[i]),
                "speed_kmh": float(speed[i]),
                "axle_loads_kg": [float(x) for x in loads[a : a + k[i]]],
                "axle_spacings_m": [float(x) for x in gaps[g : g + k[i] - 1]],
                "last_axle_ts_us": int(last[i]),
                "flags": [],
                "temperature_c": None,
                "tyres": None,
                "air_suspension": None,
            }
        )
        a += k[i]
        g += k[i] - 1
    return out


async def publish(
    bootstrap: str,
    topic: str,
    messages: list[tuple[bytes, bytes]],
    rate_per_s: float = 0.0,
    weights: list[int] | None = None,
    sent_at: list[float] | None = None,
) -> None:
    """Messages to ``topic``, as fast as the broker takes them or paced so that ``weights``
    (vehicles per message) arrive at ``rate_per_s``; ``sent_at`` gets each send time."""
    from sim.publish import producer_for

    producer = producer_for(bootstrap)
    await producer.start()
    try:
        start, due = time.monotonic(), 0.0
        for i, (key, value) in enumerate(messages):
            if rate_per_s:
                wait = start + due - time.monotonic()
                if wait > 0:
                    await asyncio.sleep(wait)
                due += (weights[i] if weights else 1) / rate_per_s
            if sent_at is not None:
                sent_at.append(time.time())
            await producer.send(topic, value, key=key)
        await producer.flush()
    finally:
        await producer.stop()
