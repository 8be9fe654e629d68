"""Batched gateway mode: a site gateway's ``VehicleBatch`` (many WIM vehicle records of one lane,
with the gateway's own plate reads) judged as arrays, end to end. No Faust, no I/O.

``schemas.columns.unpack``: the Avro record -> validated columns (the wire format's own module).
``judge``: identity, one verdict-kernel call for the batch, the KPI counters of the batch
(aggregated per hour scope, the same names as ``sinks.kpi``), and full verdict records only
for the vehicles that alert: an enforceable over-limit case, an over-limit truck without a
plate, a plate on the 黑名单. Every other vehicle exists as a row of the batch's
``VerdictBatch`` and in the counters, which is what a gateway's volume can afford (a full
record, with its alert and evidence, costs the worker more than the rest of a row ten times).

Identity of a gateway row (the gateway already paired reads and weighing, so there is no site
join here): a rear plate ending in 挂 is the trailer's, the vehicle is its front plate; front
and rear reading the same plate corroborate each other (confidence 1 − (1 − c_f)(1 − c_r)); two
different readings leave the more confident one with the margin between them as confidence, and
flag a conflict when both are sure; one reading stands with its own confidence. That combined
score becomes a probability through the gateway's own calibration maps. The verdict
kernel then applies the same enforceability rule as everywhere (检定 valid, plate confidence,
excess beyond the warning band and the device's error bound).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, fields
from typing import Any

import numpy as np
import orjson

import schemas
from kernels.plates import calibration
from kernels.verdicts import (
    OVERLIMIT,
    REAR_SAME,
    REAR_TRAILER,
    REAR_UNKNOWN,
    VerdictInputs,
    VerdictResult,
)
from kernels.verdicts import decide as decide_kernel
from schemas import flags as F
from schemas.checks import Clock
from schemas.columns import (
    VERDICT_BATCH_COLUMNS,
    BatchProblem,
    Columns,
    join_text,
    pack,
    rejected_message,
    unpack,
)
from schemas.measured import measured_vehicle
from schemas.plate_grammar import plate_format
from schemas.policy import Policy
from schemas.registry import Registry
from sinks.kpi import HEAVY_MIN_GVW_KG, HOUR_US, scopes_at
from streams.verdict_record import CONFLICT_CONFIDENCE, Identity, verdict_record


@dataclass(frozen=True)
class Identities:
    """Per row: the vehicle's plate (front/rear as on a verdict), its confidence, flags."""

    plate_front: list[str]
    plate_rear: list[str]
    confidence: np.ndarray  # the probability that plate_front is right (calibrated score)
    flags: np.ndarray  # uint32
    rear_plate: np.ndarray  # int8: what the rear read says of the body (REAR_*)
    score: np.ndarray  # the combined vendor confidences, before calibration
    views: np.ndarray  # int: 2 when front and rear read the same plate, else 1 (0: none)


def identify(
    fronts: list[str],
    rears: list[str],
    front_confidence: np.ndarray,
    rear_confidence: np.ndarray,
    trailer: np.ndarray,
) -> Identities:
    """The plate of every row from the gateway's two reads (rule in the module doc)."""
    n = len(fronts)
    front_arr = np.array(fronts, dtype=object)
    rear_arr = np.array(rears, dtype=object)
    cf = np.where(front_arr != "", front_confidence, 0.0)
    cr = np.where(rear_arr != "", rear_confidence, 0.0)
    has_f, has_r = cf > 0, cr > 0
    same = front_arr == rear_arr
    flags = np.zeros(n, dtype=np.uint32)
    flags[~has_f] |= F.NO_FRONT
    flags[~has_r] |= F.NO_REAR
    both = has_f & has_r & ~trailer
    agree = both & same
    differ = both & ~same
    conf = np.where(has_f, cf, np.where(has_r & ~trailer, cr, 0.0))
    conf = np.where(agree, 1.0 - (1.0 - cf) * (1.0 - cr), conf)
    conf = np.where(differ, np.abs(cf - cr), conf)
    flags[differ & (np.minimum(cf, cr) >= CONFLICT_CONFIDENCE)] |= F.FRONT_REAR_CONFLICT
    use_rear = (differ & (cf < cr)) | (~has_f & has_r & ~trailer)
    named = has_f | (has_r & ~trailer)
    vehicle = np.where(use_rear, rear_arr, np.where(named, front_arr, ""))
    invalid = {p for p in set(vehicle.tolist()) if p and plate_format(p) is None}
    if invalid:
        flags[[p in invalid for p in vehicle.tolist()]] |= F.PLATE_FORMAT_INVALID
    plate_front = vehicle.tolist()
    plate_rear = np.where(has_r, rear_arr, "").tolist()
    score = np.where(named, conf, 0.0)
    views = np.where(agree, 2, np.where(named, 1, 0))
    rear_plate = np.full(n, REAR_UNKNOWN, dtype=np.int8)
    rear_plate[has_r & trailer] = REAR_TRAILER
    rear_plate[agree] = REAR_SAME
    probability = calibrated(score, views, [p in invalid for p in plate_front])
    return Identities(plate_front, plate_rear, probability, flags, rear_plate, score, views)


def calibrated(score: np.ndarray, views: np.ndarray, invalid: list[bool]) -> np.ndarray:
    """The gateway's combined vendor confidence as a probability (its own fitted maps: a
    vendor's number means what that vendor's OCR makes it mean)."""
    out = np.zeros(score.size)
    bad = np.array(invalid, dtype=bool).reshape(-1)
    for kind, rows in (
        ("invalid_format", bad & (views > 0)),
        ("one_view", ~bad & (views == 1)),
        ("several_views", ~bad & (views >= 2)),
    ):
        if rows.any():
            out[rows] = calibration("gateway", kind)(score[rows])
    return out


@dataclass(frozen=True)
class Judged:
    columns: Columns
    identities: Identities
    result: VerdictResult
    local: np.ndarray  # bool
    flagged: list[dict[str, Any]]  # full verdicts of the rows that need one
    counters: Counter[tuple[str, str]]  # (KPI hash key, counter) -> increment


def judge(
    c: Columns,
    registry: Registry,
    policy: Policy,
    blacklisted: frozenset[str] | set[str] = frozenset(),
) -> Judged:
    """Verdicts of one batch's valid rows (``judge_round`` of one)."""
    return judge_round([c], registry, policy, blacklisted)[0]


def judge_round(
    cs: list[Columns],
    registry: Registry,
    policy: Policy,
    blacklisted: frozenset[str] | set[str] = frozenset(),
) -> list[Judged]:
    """Verdicts of the valid rows of several batches: identity and the verdict kernel once for
    all their rows (their fixed cost is most of a small batch's); then per batch, full records
    for the vehicles that alert and the KPI increments of every row."""
    sizes = [len(c) for c in cs]
    fronts = [p for c in cs for p in c.plate_front]
    rears = [p for c in cs for p in c.plate_rear]
    ident = identify(
        fronts,
        rears,
        np.concatenate([c.front_confidence for c in cs]),
        np.concatenate([c.rear_confidence for c in cs]),
        np.concatenate([c.rear_is_trailer for c in cs]),
    )
    devices = [registry.wim_devices[c.device_id] for c in cs]
    result = decide_kernel(
        VerdictInputs(
            axle_count=np.concatenate([c.axle_count for c in cs]),
            axle_spacings_m=np.concatenate([c.axle_spacings_m for c in cs]),
            gvw_kg=np.concatenate([c.gvw_kg for c in cs]),
            speed_kmh=np.concatenate([c.speed_kmh for c in cs]),
            flags=ident.flags,
            ts_us=np.concatenate([c.ts_us for c in cs]),
            cert_from_us=np.repeat([d.cert_from_us for d in devices], sizes),
            cert_to_us=np.repeat([d.cert_to_us for d in devices], sizes),
            device_error_pct=np.repeat(
                [policy.device_error_pct(d.accuracy_class) for d in devices], sizes
            ),
            plate_confidence=ident.confidence,
            air_suspension=-1,
            single_tyre_axles=-1,
            rear_plate=ident.rear_plate,
        ),
        policy,
    )
    # 本地: a valid 2-character authority prefix (浙D) per site, checked by the registry
    authority = [registry.sites[c.site_id].authority for c in cs]
    plates = [f or r for f, r in zip(ident.plate_front, ident.plate_rear, strict=True)]
    local = np.array(
        [p.startswith(a) for p, a in zip(plates, np.repeat(authority, sizes), strict=True)],
        dtype=bool,
    )
    # the vehicles that alert: an enforceable case, an over-limit truck without a plate
    unidentified = (result.flags & F.UNIDENTIFIED) != 0
    wanted = (result.verdict == OVERLIMIT) & (result.enforceable | unidentified)
    if blacklisted:
        wanted |= np.array([p in blacklisted for p in ident.plate_front], dtype=bool)
    counted = round_counters(cs, ident, result, local, policy)
    out, start = [], 0
    for c, n, counts in zip(cs, sizes, counted, strict=True):
        rows = slice(start, start + n)
        start += n
        mine = Identities(
            ident.plate_front[rows],
            ident.plate_rear[rows],
            ident.confidence[rows],
            ident.flags[rows],
            ident.rear_plate[rows],
            ident.score[rows],
            ident.views[rows],
        )
        part = VerdictResult(**{f.name: getattr(result, f.name)[rows] for f in fields(result)})
        flagged = [
            full_verdict(c, mine, part, int(i), registry, policy)
            for i in np.flatnonzero(wanted[rows])
        ]
        out.append(Judged(c, mine, part, local[rows], flagged, counts))
    return out


@dataclass(frozen=True)
class Received:
    """One gateway message read: whether rows of it go on, and the dead letter it calls for
    (reason, message), if any — the whole message, or its rows that were left out."""

    goes_on: bool
    dead: tuple[str, str] | None = None


def receive(
    value: bytes, topic: str, registry: Registry, clock: Clock | None, now_s: float
) -> tuple[Received, Columns | None]:
    """One message off ``wim.batches``: what became of it, and its valid rows."""
    try:
        name, record = schemas.decode_any_wire(value)
    except schemas.DecodeError as exc:
        return Received(False, ("undecodable", str(exc))), None
    if name != "zhichao.VehicleBatch":
        return Received(False, ("wrong_schema", f"{name} on {topic}")), None
    try:
        columns, rejected = unpack(record, registry, clock, now_s)
    except BatchProblem as exc:
        return Received(False, (exc.reason, str(exc))), None
    dead = ("bad_rows", rejected_message(rejected, record["count"])) if rejected else None
    return Received(len(columns) > 0, dead), columns if len(columns) else None


@dataclass(frozen=True)
class Outcome:
    """What the worker writes and sends of a judged batch, and all it needs of it: small to
    send back from a helper process (no columns; text as one string)."""

    batch_id: str
    site_id: str
    flagged: list[dict[str, Any]]  # full verdicts of the rows that alert
    counters: Counter[tuple[str, str]]  # (KPI hash, counter) -> increment
    summary: bytes  # the dashboards' batch stream line
    verdict_batch: bytes  # zhichao.VerdictBatch, Avro on the wire
    verdict: np.ndarray  # per row, for the metrics
    enforceable: np.ndarray
    plates: str  # every plate its rows' identities can take, newline-joined (黑名单 lookup)

    @property
    def support(self) -> dict[str, Any]:
        """What the flagged verdicts' evidence rests on: the gateway's batch, no samples."""
        return {"samples_sha256": None, "read_ids": gateway_read_ids(self.batch_id)}

    def plate_set(self) -> set[str]:
        return set(self.plates.split("\n")) - {""}


def outcome_of(j: Judged, policy: Policy) -> Outcome:
    c = j.columns
    return Outcome(
        batch_id=c.batch_id,
        site_id=c.site_id,
        flagged=j.flagged,
        counters=j.counters,
        summary=summary_of(j),
        verdict_batch=schemas.VERDICT_BATCH.encode_wire(verdict_batch(j, policy)),
        verdict=j.result.verdict,
        enforceable=j.result.enforceable,
        plates=join_text(sorted(vehicle_plates(c))),
    )


@dataclass(frozen=True)
class GatewayRound:
    received: list[Received]  # per message, in order
    outcomes: list[Outcome]  # per message whose rows go on, in order


def judge_messages(
    messages: list[tuple[bytes, str]],
    registry: Registry,
    policy: Policy,
    clock: Clock | None,
    now_s: float,
    listed: frozenset[str] = frozenset(),
) -> GatewayRound:
    """A round of ``wim.batches`` messages (value, topic) read and judged, with the plates on
    the 黑名单 among ``listed`` (the worker looks the round's plates up in Redis, then has the
    batches with a hit judged again with them): pure, so that it can run in a helper process.
    ``now_s`` fixes the clock check, so that judging a message again reads the same rows."""
    received, kept = [], []
    for value, topic in messages:
        outcome, columns = receive(value, topic, registry, clock, now_s)
        received.append(outcome)
        if columns is not None:
            kept.append(columns)
    judged = judge_round(kept, registry, policy, listed) if kept else []
    return GatewayRound(received, [outcome_of(j, policy) for j in judged])


def gateway_read_ids(batch_id: str) -> tuple[str, ...]:
    """The read ids a flagged row's verdict and evidence name: its gateway batch."""
    return (f"gateway:{batch_id}",)


def vehicle_plates(c: Columns) -> set[str]:
    """Every plate a row's identity can take (for one 黑名单 lookup per round)."""
    own_rear = np.array(c.plate_rear, dtype=object)[~c.rear_is_trailer]
    return (set(c.plate_front) | set(own_rear.tolist())) - {""}


def measured_row(c: Columns, i: int) -> dict[str, Any]:
    """Row ``i`` as a measured vehicle (the shape ``streams.stages`` works on)."""
    k = int(c.axle_count[i])
    return measured_vehicle(
        passage_id=c.passage_ids[i],
        site_id=c.site_id,
        device_id=c.device_id,
        lane=c.lane,
        direction=c.direction,
        ts_us=int(c.ts_us[i]),
        last_axle_ts_us=int(c.last_axle_ts_us[i]),
        speed_kmh=float(c.speed_kmh[i]),
        axle_loads_kg=[float(x) for x in c.axle_loads_kg[i, :k]],
        axle_spacings_m=[float(x) for x in c.axle_spacings_m[i, : k - 1]],
        gvw_kg=float(c.gvw_kg[i]),
        flags=[],
        source="gateway",
    )


def full_verdict(
    c: Columns, ident: Identities, result: VerdictResult, i: int, registry: Registry, policy: Policy
) -> dict[str, Any]:
    """The complete verdict of row ``i``, as the per-vehicle pipeline writes it; its evidence
    names the batch (the gateway's record) instead of camera read ids."""
    identity = Identity(
        plate_front=ident.plate_front[i],
        plate_rear=ident.plate_rear[i],
        confidence=float(ident.confidence[i]),
        flags=int(ident.flags[i]),
        read_ids=gateway_read_ids(c.batch_id),
    )
    return verdict_record(measured_row(c, i), identity, result, i, registry, policy)


def round_counters(
    cs: list[Columns],
    ident: Identities,
    result: VerdictResult,
    local: np.ndarray,
    policy: Policy,
) -> list[Counter[tuple[str, str]]]:
    """Per batch of a round, the increments of the KPI counters: ``sinks.kpi.counters_of`` per
    row, summed per (hash, counter) with arrays over the whole round (rows of the batches in
    order; a batch's rows may fall into more than one hour)."""
    verdict = result.verdict
    unidentified = (result.flags & F.UNIDENTIFIED) != 0
    identified = (np.array(ident.plate_front, dtype=object) != "") | (
        np.array(ident.plate_rear, dtype=object) != ""
    )
    named = identified & ~unidentified
    over = verdict == OVERLIMIT
    gvw = np.concatenate([c.gvw_kg for c in cs])
    columns = {
        "vehicles": np.ones(len(gvw), dtype=bool),
        "heavy": gvw >= HEAVY_MIN_GVW_KG,
        "overlimit": over,
        "warning": verdict == 1,
        "enforceable": result.enforceable,
        "unidentified": unidentified,
        "local": named & local,
        "nonlocal": named & ~local,
        "overlimit_local": named & local & over,
        "overlimit_nonlocal": named & ~local & over,
    }
    # one group per (batch, hour)
    batch_of = np.repeat(np.arange(len(cs)), [len(c) for c in cs])
    hours = np.concatenate([c.ts_us for c in cs]) // HOUR_US
    base_hour = int(hours.min())
    span = int(hours.max()) - base_hour + 1
    if span == 1:  # the usual round: every group is a batch
        keys, group_of = np.arange(len(cs)), batch_of
    else:
        keys, group_of = np.unique(batch_of * span + (hours - base_hour), return_inverse=True)
    g = len(keys)
    sums = {
        name: np.bincount(group_of, weights=col, minlength=g).astype(np.int64).tolist()
        for name, col in columns.items()
    }
    width = len(policy.class_codes) + 1
    found = np.bincount(group_of * width + result.class_index + 1, minlength=g * width)
    found = found.reshape(g, width).tolist()
    class_names = ["class:unclassified"] + [f"class:{code}" for code in policy.class_codes]
    out: list[Counter[tuple[str, str]]] = [Counter() for _ in cs]
    for k in range(g):
        b, hour = divmod(int(keys[k]), span) if span > 1 else (k, 0)
        hour += base_hour
        counts = {name: sums[name][k] for name in columns}
        counts.update(zip(class_names, found[k], strict=True))
        totals = out[b]
        for key in scopes_at(cs[b].site_id, cs[b].lane, hour):
            for name, count in counts.items():
                if count:
                    totals[(key, name)] += count
    return out


def verdict_batch(j: Judged, policy: Policy) -> dict[str, Any]:
    """The ``VerdictBatch`` record of a judged batch."""
    c, r = j.columns, j.result
    return {
        "batch_id": c.batch_id,
        "site_id": c.site_id,
        "device_id": c.device_id,
        "lane": c.lane,
        "direction": c.direction,
        "policy_version": policy.version,
        "class_codes": list(policy.class_codes),
        "passage_ids": join_text(c.passage_ids),
        "plates": join_text(j.identities.plate_front),
        **pack(
            {
                "ts_us": c.ts_us,
                "gvw_kg": c.gvw_kg,
                "limit_kg": np.nan_to_num(r.limit_kg, nan=0.0),
                "class_index": r.class_index,
                "verdict": r.verdict,
                "enforceable": r.enforceable,
                "flags": r.flags,
            },
            VERDICT_BATCH_COLUMNS,
        ),
    }


def summary_of(j: Judged) -> bytes:
    """What the dashboards' batch stream carries for a batch (JSON)."""
    c = j.columns
    return orjson.dumps(
        {
            "batch_id": c.batch_id,
            "site_id": c.site_id,
            "lane": c.lane,
            "vehicles": len(c),
            "overlimit": int(np.count_nonzero(j.result.verdict == OVERLIMIT)),
            "enforceable": int(np.count_nonzero(j.result.enforceable)),
            "sent_us": c.sent_us,
        }
    )
