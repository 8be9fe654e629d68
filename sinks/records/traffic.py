"""Sightings and hourly traffic counts in the store of record, for the analysis of a quarter.

Every verdict (lawful ones too) becomes a row of ``sightings``; the sightings stored for the
first time add to ``traffic_hours`` in the same statement, so a batch delivered again changes
nothing and the hourly counts equal a count of the sightings. The counters are the KPI
counters' (``sinks.kpi.counters_of``): vehicles, heavy (GVW ≥ 3.5 t), over-limit, warnings,
enforceable, unidentified.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import psycopg

from schemas.plate_grammar import AUTHORITY_LETTERS, PROVINCES
from schemas.units import US
from sinks.kpi import HEAVY_MIN_GVW_KG, HOUR_US

SIGHTING_COLUMNS = (
    "sighting_id",
    "seen_at",
    "plate",
    "site_id",
    "lane",
    "direction",
    "vehicle_class",
    "axle_count",
    "gvw_kg",
    "verdict",
    "enforceable",
)
KEY_COLUMNS = (
    "hour",
    "site_id",
    "lane",
    "direction",
    "vehicle_class",
    "plate_region",
    "locality",
)
COUNT_COLUMNS = ("vehicles", "heavy", "overlimit", "warnings", "enforceable", "unidentified")
INCOMING = (
    "CREATE TEMP TABLE incoming_sightings ("
    "LIKE sightings, hour timestamptz, plate_region text, locality text, heavy boolean, "
    "unidentified boolean) ON COMMIT DROP"
)
INCOMING_COLUMNS = (*SIGHTING_COLUMNS, "hour", "plate_region", "locality", "heavy", "unidentified")
_keys = ", ".join(f"i.{c}" for c in KEY_COLUMNS)
STORE = f"""
WITH new AS (
    INSERT INTO sightings ({", ".join(SIGHTING_COLUMNS)})
    SELECT {", ".join(SIGHTING_COLUMNS)} FROM incoming_sightings ORDER BY sighting_id
    ON CONFLICT (sighting_id) DO NOTHING
    RETURNING sighting_id
), counted AS (
    INSERT INTO traffic_hours ({", ".join(KEY_COLUMNS)}, {", ".join(COUNT_COLUMNS)})
    SELECT {_keys},
           count(*),
           count(*) FILTER (WHERE i.heavy),
           count(*) FILTER (WHERE i.verdict = 'overlimit'),
           count(*) FILTER (WHERE i.verdict = 'warning'),
           count(*) FILTER (WHERE i.enforceable),
           count(*) FILTER (WHERE i.unidentified)
      FROM incoming_sightings i JOIN new USING (sighting_id)
     GROUP BY {_keys}
     ORDER BY {_keys}
    ON CONFLICT ({", ".join(KEY_COLUMNS)}) DO UPDATE SET
        {", ".join(f"{c} = traffic_hours.{c} + EXCLUDED.{c}" for c in COUNT_COLUMNS)}
    RETURNING 1
)
SELECT (SELECT count(*) FROM new)
"""  # noqa: S608 - the column names are this module's own
# ORDER BY: two workers storing the same sightings and adding to the same hours take the rows'
# locks in one order (no deadlock)


def plate_region(plate: str) -> str:
    """The 车籍地 a plate names: its province abbreviation and authority letter (浙D), or ''
    for what is not a plate of the mainland grammar."""
    if len(plate) >= 2 and plate[0] in PROVINCES and plate[1] in AUTHORITY_LETTERS:
        return plate[:2]
    return ""


def identified_plate(verdict: dict[str, Any]) -> str | None:
    """The plate a sighting is filed under: the front plate, else the rear; none for a vehicle
    the fusion left unidentified."""
    if "unidentified" in verdict["flags"]:
        return None
    return verdict["plate_front"] or verdict["plate_rear"] or None


def locality(verdict: dict[str, Any]) -> str:
    """local / nonlocal as the KPI counters count it (the plate's 车籍地 against the site's
    authority), unread without a plate."""
    if identified_plate(verdict) is None:
        return "unread"
    return "local" if verdict["local"] else "nonlocal"


def hour_of(ts_us: int) -> dt.datetime:
    """The start of the China-time hour of ``ts_us`` (China is a whole number of hours from
    UTC, so the UTC hour starts with it)."""
    return dt.datetime.fromtimestamp(ts_us // HOUR_US * HOUR_US / US, dt.UTC)


def incoming_row(v: dict[str, Any]) -> tuple[Any, ...]:
    plate = identified_plate(v)
    return (
        v["passage_id"],
        dt.datetime.fromtimestamp(v["ts_us"] / US, dt.UTC),
        plate,
        v["site_id"],
        v["lane"],
        v["direction"],
        v["vehicle_class"],
        v["axle_count"],
        v["gvw_kg"],
        v["verdict"],
        v["enforceable"],
        hour_of(v["ts_us"]),
        plate_region(plate) if plate else "",
        locality(v),
        v["gvw_kg"] >= HEAVY_MIN_GVW_KG,
        "unidentified" in v["flags"],
    )


async def store_traffic(conn: psycopg.AsyncConnection, verdicts: list[dict[str, Any]]) -> int:
    """Store a batch's sightings and add the new ones to their hours, in the caller's
    transaction; returns how many were new."""
    # a passage twice in one batch (announced again after a restart, or two overlapping
    # archives) is one sighting: the join below would count every copy
    verdicts = list({v["passage_id"]: v for v in reversed(verdicts)}.values())
    if not verdicts:
        return 0
    await conn.execute(INCOMING)
    async with conn.cursor().copy(
        f"COPY incoming_sightings ({', '.join(INCOMING_COLUMNS)}) FROM STDIN"
    ) as copy:
        for v in verdicts:
            await copy.write_row(incoming_row(v))
    cur = await conn.execute(STORE)
    return int((await cur.fetchone())[0])
