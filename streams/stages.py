"""The processing stages shared by the Faust agents and ``zhichao replay``: no Faust, no I/O.

``measure_passages`` (weigh): raw passages -> measured vehicles, one axle-kernel call per batch.
``measure_controller``: controller-computed WIM vehicles -> measured vehicles.
``decide``: measured vehicles + camera reads -> verdicts (site join, fusion, verdict kernel).

The site join's tolerances come from the settings (``join_params``) and are passed down as
``join``; without one, the join runs with the settings' defaults.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, fields
from itertools import chain
from typing import Any

import numpy as np

from kernels import plates, settle
from kernels import verdicts as verdict_kernel
from kernels.axles import MAX_AXLES, AxleParams, axle_batch
from kernels.plates import JoinParams
from kernels.verdicts import REAR_SAME, REAR_TRAILER, REAR_UNKNOWN, VerdictInputs
from kernels.verdicts import decide as decide_kernel
from schemas import flags as F
from schemas.measured import measured_vehicle
from schemas.plate_grammar import is_trailer, normalise, plate_format
from schemas.policy import Policy
from schemas.registry import Registry
from schemas.settings import Settings
from schemas.units import US
from streams.validation import passage_problem, read_problem, vehicle_problem
from streams.verdict_record import CONFLICT_CONFIDENCE, Identity, verdict_record


def join_params(settings: Settings) -> JoinParams:
    """The site join's tolerances and costs from the settings (``join_<name>`` each)."""
    return JoinParams(**{f.name: getattr(settings, "join_" + f.name) for f in fields(JoinParams)})


@dataclass(frozen=True)
class Rejected:
    """An input that cannot be processed, with a reason code and a readable message."""

    record: dict[str, Any]
    reason: str
    message: str


def measure_passages(
    passages: list[dict[str, Any]],
    registry: Registry,
    params: AxleParams | None = None,
) -> tuple[list[dict[str, Any]], list[Rejected]]:
    """Axle loads of a batch of WIM passages (one kernel call)."""
    good, rejected = [], []
    for p in passages:
        problem = passage_problem(p, registry)
        if problem:
            rejected.append(Rejected(p, *problem))
        else:
            good.append(p)
    if not good:
        return [], rejected
    blobs = [p["samples"] for p in good]
    lengths = np.array([len(b) // 2 for b in blobs], dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    samples = np.frombuffer(b"".join(blobs), dtype="<i2")
    calib = np.fromiter(chain.from_iterable(p["calib"] for p in good), dtype=np.float64)
    result = axle_batch(
        samples,
        offsets,
        [p["rows"] for p in good],
        [p["segments"] for p in good],
        [p["fs_hz"] for p in good],
        [p["row_spacing_m"] for p in good],
        [p["sensor_width_m"] for p in good],
        calib,
        params=params,
    )
    sha256s = [hashlib.sha256(b).hexdigest() for b in blobs]
    counts = result.axle_count.tolist()
    speeds, gvws = result.speed_kmh.tolist(), result.gvw_kg.tolist()
    firsts, lasts = result.t_first_axle_s.tolist(), result.t_last_axle_s.tolist()
    measured = []
    for i, p in enumerate(good):
        k = counts[i]
        measured.append(
            measured_vehicle(
                **_identity_of(p),
                ts_us=p["ts_us"] + round(firsts[i] * US),
                last_axle_ts_us=p["ts_us"] + round(lasts[i] * US),
                speed_kmh=speeds[i],
                axle_loads_kg=result.axle_loads_kg[i, :k].tolist(),
                axle_spacings_m=result.axle_spacings_m[i, : max(k - 1, 0)].tolist(),
                gvw_kg=gvws[i],
                flags=F.to_names(result.flags[i]),
                source="raw",
                samples_sha256=sha256s[i],
                tyres=p.get("tyres"),
                air_suspension=p.get("air_suspension"),
            )
        )
    return measured, rejected


def _identity_of(record: dict[str, Any]) -> dict[str, Any]:
    """What a measured vehicle keeps of the weighing it was measured from, as it was."""
    return {k: record[k] for k in ("passage_id", "site_id", "device_id", "lane", "direction")}


def measure_controller(
    vehicles: list[dict[str, Any]],
    registry: Registry,
) -> tuple[list[dict[str, Any]], list[Rejected]]:
    """WIM vehicles whose controller computed the axle loads, as measured vehicles."""
    measured, rejected = [], []
    for v in vehicles:
        problem = vehicle_problem(v, registry)
        if problem:
            rejected.append(Rejected(v, *problem))
            continue
        loads, spacings = list(v["axle_loads_kg"]), list(v["axle_spacings_m"])
        speed_ms = max(float(v["speed_kmh"]) / 3.6, 0.1)
        last = v.get("last_axle_ts_us")
        if last is None:
            last = v["ts_us"] + round(sum(spacings) / speed_ms * US)
        measured.append(
            measured_vehicle(
                **_identity_of(v),
                ts_us=v["ts_us"],
                last_axle_ts_us=last,
                speed_kmh=float(v["speed_kmh"]),
                axle_loads_kg=loads,
                axle_spacings_m=spacings,
                gvw_kg=float(sum(loads)),
                flags=list(v.get("flags") or []),
                source="controller",
                tyres=v.get("tyres"),
                air_suspension=v.get("air_suspension"),
            )
        )
    return measured, rejected


def usable_reads(
    reads: list[dict[str, Any]], registry: Registry
) -> tuple[list[dict[str, Any]], list[Rejected]]:
    """The camera reads that can be matched, and the others with the reason."""
    good, rejected = [], []
    for r in reads:
        problem = read_problem(r, registry)
        if problem:
            rejected.append(Rejected(r, *problem))
        else:
            good.append(r)
    return good, rejected


def _identify(
    front: list[dict[str, Any]],
    rear: list[dict[str, Any]],
    model: plates.CostModel,
    own_lane: Callable[[dict[str, Any]], bool] = lambda read: True,
) -> Identity:
    """Front plate (tractor / rigid truck) and rear plate (trailer 挂, or the same plate).
    ``own_lane``: whether a read comes from a camera over the vehicle's lane. A plate that
    only cameras over other lanes read may be a neighbour's (the join lets a lane changer's
    reads through at a cost): it is flagged ``other_lane_plate`` and goes to review."""
    flags = 0
    as_reads = lambda rs: [  # noqa: E731
        (r["plate"], r.get("char_conf"), r["confidence"], r["camera_id"]) for r in rs
    ]
    rear_trailer = [r for r in rear if is_trailer(normalise(r["plate"]))]
    rear_own = [r for r in rear if r not in rear_trailer]
    if not front:
        flags |= F.NO_FRONT
    if not rear:
        flags |= F.NO_REAR
    fused_front = plates.fuse_reads(as_reads(front), model)
    if rear_trailer:
        fused_rear = plates.fuse_reads(as_reads(rear_trailer), model)
        identity, used = fused_front, front
    else:
        fused_rear = plates.fuse_reads(as_reads(rear_own), model)
        confident = min(fused_front.score, fused_rear.score) >= CONFLICT_CONFIDENCE
        if confident and plates.distance(fused_front.plate, fused_rear.plate, model) > 0.5:
            flags |= F.FRONT_REAR_CONFLICT  # both ends read well, yet show different plates
        # a rigid vehicle shows one plate front and rear: fuse all its reads
        identity = plates.fuse_reads(as_reads(front + rear_own), model)
        used = front + rear_own
    plate = identity.plate or fused_rear.plate
    confidence = plates.plate_probability(identity)
    named = [r for r in (used if identity.plate else rear) if normalise(r["plate"])]
    if named and not any(own_lane(r) for r in named):
        flags |= F.OTHER_LANE_PLATE
    if rear_trailer:
        body = REAR_TRAILER  # a 挂 plate: a combination
    elif fused_front.plate and fused_rear.plate == fused_front.plate:
        body = REAR_SAME  # one plate at both ends: likelier a rigid truck
    else:
        body = REAR_UNKNOWN
    if plate and plate_format(plate) is None:
        flags |= F.PLATE_FORMAT_INVALID
    return Identity(
        plate_front=identity.plate,
        plate_rear=fused_rear.plate,
        confidence=confidence,
        flags=flags,
        read_ids=tuple(sorted(r["read_id"] for r in used + rear_trailer)),
        rear_plate=body,
        score=identity.score if identity.plate else 0.0,
        views=identity.views if identity.plate else 0,
    )


def join_site_reads(
    measured: list[dict[str, Any]],
    reads: list[dict[str, Any]],
    registry: Registry,
    join: JoinParams | None = None,
) -> list[tuple[list[dict], list[dict]]]:
    """Front and rear reads of each measured vehicle (M1 site join per site and direction)."""
    by_group: dict[tuple[str, str], list[int]] = defaultdict(list)
    for i, m in enumerate(measured):
        by_group[(m["site_id"], m["direction"])].append(i)
    reads_by_group: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for r in reads:
        if r["view"] in ("front", "rear"):
            reads_by_group[(r["site_id"], r["direction"])].append(r)
    out: list[tuple[list[dict], list[dict]]] = [([], []) for _ in measured]
    cameras = {c.id: (c.view, c.lane, c.d_cam_m) for c in registry.cameras.values()}
    for key, idx in by_group.items():
        group_reads = reads_by_group.get(key, [])
        if not group_reads:
            continue
        ms = [measured[i] for i in idx]
        camera_ids = sorted({r["camera_id"] for r in group_reads})
        cam_index = {c: k for k, c in enumerate(camera_ids)}
        vehicles = {
            "t_first_us": np.array([m["ts_us"] for m in ms], dtype=np.float64),
            "t_last_us": np.array([m["last_axle_ts_us"] for m in ms], dtype=np.float64),
            "speed_ms": np.array([m["speed_kmh"] / 3.6 for m in ms], dtype=np.float64),
            "lane": np.array([m["lane"] for m in ms], dtype=np.int64),
        }
        read_arrays = {
            "ts_us": np.array([r["ts_us"] for r in group_reads], dtype=np.float64),
            "camera": np.array([cam_index[r["camera_id"]] for r in group_reads], dtype=np.int64),
            "trailer": np.array([is_trailer(normalise(r["plate"])) for r in group_reads]),
            "camera_ids": camera_ids,
        }
        assignment = plates.site_join(vehicles, read_arrays, cameras, join)
        for r, v in zip(group_reads, assignment, strict=True):
            if v >= 0:
                target = out[idx[v]]
                (target[0] if r["view"] == "front" else target[1]).append(r)
    return out


def decide(
    measured: list[dict[str, Any]],
    reads: list[dict[str, Any]],
    registry: Registry,
    policy: Policy,
    join: JoinParams | None = None,
) -> list[dict[str, Any]]:
    """Verdicts for measured vehicles, matched to the camera reads of their sites."""
    return decide_with_support(measured, reads, registry, policy, join=join)[0]


def read_ids_of(front: list[dict[str, Any]], rear: list[dict[str, Any]]) -> tuple[str, ...]:
    """The ids of the reads a vehicle was matched to, as its evidence lists them."""
    return tuple(sorted(r["read_id"] for r in front + rear))


def decide_group(
    measured: list[dict[str, Any]],
    reads: list[dict[str, Any]],
    registry: Registry,
    policy: Policy,
    early: dict[str, tuple[str, ...]],
    join: JoinParams | None = None,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[str]]:
    """``decide_with_support`` for a group some of whose vehicles were decided early
    (``early``: passage id -> the read ids they were decided with): the join runs over the whole
    group (the others' reads depend on them), verdicts only for the others. Also returns the
    early vehicles the group's join gives other reads (none, if settling is right)."""
    if not early:
        return *decide_with_support(measured, reads, registry, policy, join=join), []
    rest, rest_matched, differ = [], [], []
    matched = join_site_reads(measured, reads, registry, join)
    for m, (front, rear) in zip(measured, matched, strict=True):
        ids = early.get(m["passage_id"])
        if ids is None:
            rest.append(m)
            rest_matched.append((front, rear))
        elif ids != read_ids_of(front, rear):
            differ.append(m["passage_id"])
    return *decide_with_support(rest, [], registry, policy, rest_matched), differ


def identify_matched(
    measured: list[dict[str, Any]],
    matched: list[tuple[list[dict], list[dict]]],
    registry: Registry,
) -> list[Identity]:
    """The plate identity of each measured vehicle from the front and rear reads it was
    matched to, with each site's own plate costs (its province)."""
    identities = []
    cameras = registry.cameras
    for m, (front, rear) in zip(measured, matched, strict=True):
        site = registry.sites.get(m["site_id"])
        model = plates.cost_model(site.authority[0] if site else None)

        def own_lane(read: dict[str, Any], lane: int = m["lane"]) -> bool:
            camera = cameras.get(read["camera_id"])
            return camera is None or camera.lane == lane

        identities.append(_identify(front, rear, model, own_lane))
    return identities


def decide_with_support(
    measured: list[dict[str, Any]],
    reads: list[dict[str, Any]],
    registry: Registry,
    policy: Policy,
    matched: list[tuple[list[dict], list[dict]]] | None = None,
    join: JoinParams | None = None,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Verdicts, and per verdict what its evidence rests on beyond the verdict itself: the
    digest of the raw samples and the ids of the camera reads used. ``matched``: each
    vehicle's front and rear reads, when the join was done already (``MatchBuffers.settled``);
    ``reads`` is then not used."""
    n = len(measured)
    if n == 0:
        return [], []
    if matched is None:
        matched = join_site_reads(measured, reads, registry, join)
    identities = identify_matched(measured, matched, registry)

    spacings = np.zeros((n, MAX_AXLES - 1))
    flags = np.zeros(n, dtype=np.uint32)
    cert_from = np.zeros(n, dtype=np.int64)
    cert_to = np.zeros(n, dtype=np.int64)
    err = np.zeros(n)
    air = np.full(n, -1, dtype=np.int8)
    single = np.full(n, -1, dtype=np.int64)
    for i, (m, ident) in enumerate(zip(measured, identities, strict=True)):
        s = m["axle_spacings_m"][: MAX_AXLES - 1]
        spacings[i, : len(s)] = s
        fl = F.from_names([f for f in m["flags"] if f in F.BITS]) | ident.flags
        device = registry.wim_devices.get(m["device_id"])
        if device is None:
            fl |= F.UNKNOWN_DEVICE
        else:
            cert_from[i], cert_to[i] = device.cert_from_us, device.cert_to_us
            err[i] = policy.device_error_pct(device.accuracy_class)
        flags[i] = fl
        if m.get("air_suspension") is not None:
            air[i] = 1 if m["air_suspension"] else 0
        if m.get("tyres") is not None:
            single[i] = _single_tyre_axles(m["tyres"], m["axle_spacings_m"], policy)
    result = decide_kernel(
        VerdictInputs(
            axle_count=np.array([m["axle_count"] for m in measured]),
            axle_spacings_m=spacings,
            gvw_kg=np.array([m["gvw_kg"] for m in measured], dtype=np.float64),
            speed_kmh=np.array([m["speed_kmh"] for m in measured], dtype=np.float64),
            flags=flags,
            ts_us=np.array([m["ts_us"] for m in measured], dtype=np.int64),
            cert_from_us=cert_from,
            cert_to_us=cert_to,
            device_error_pct=err,
            plate_confidence=np.array([i.confidence for i in identities]),
            air_suspension=air,
            single_tyre_axles=single,
            rear_plate=np.array([i.rear_plate for i in identities], dtype=np.int8),
        ),
        policy,
    )
    verdicts, support = [], []
    for i, (m, ident) in enumerate(zip(measured, identities, strict=True)):
        v = verdict_record(m, ident, result, i, registry, policy)
        verdicts.append(v)
        s = {"samples_sha256": m.get("samples_sha256"), "read_ids": ident.read_ids}
        if v["enforceable"]:
            # what the review decides the weighing again from (``streams.review``): only for
            # the verdicts that get an evidence record, so the others carry no more than ids
            s["measurement"], s["reads"] = m, {"front": matched[i][0], "rear": matched[i][1]}
        support.append(s)
    return verdicts, support


def _single_tyre_axles(tyres: list[int], spacings: list[float], policy: Policy) -> int:
    """Single-tyre (not wide) axles that are neither steer nor drive axles: the −3000 kg rule.

    Steer: the first axle (and the second when closer than the group spacing, double steer).
    Drive: the group after the steer axles. Both are counted leniently (as exempt).
    """
    k = len(tyres)
    if k < 3:
        return 0
    steer_end = 1 if spacings and spacings[0] >= policy.group_spacing_max_m else 2
    drive_end = steer_end + 1
    while drive_end < k and spacings[drive_end - 1] < policy.group_spacing_max_m:
        drive_end += 1
    return sum(1 for j in range(drive_end, k) if tyres[j] == 1)


def warm_up(
    registry: Registry,
    policy: Policy,
    measure_too: bool = True,
    settle_too: bool = True,
    join: JoinParams | None = None,
) -> None:
    """Compile the Numba kernels now (seconds), not on the first live batch. A worker whose
    helper process measures compiles only the verdict kernel (gateway batches) and the settle
    kernel (``measure_too=False``: the axle kernel, ~6 s, compiles on demand should the helper
    fail); the helper has no use for the settle kernel (``settle_too=False``)."""
    from sim.config import SimConfig
    from sim.traffic import CitySimulator

    if measure_too:
        traffic = CitySimulator(SimConfig(vehicles=3, seed=0), registry).run()
        measured, _ = measure_passages(traffic.passages, registry)
        decide(measured, traffic.reads, registry, policy, join)
    else:
        verdict_kernel.warm_up(policy)
    if settle_too:
        settle.warm_up()
