"""A simulated reviewer (审核员) for the demo: works part of the case queue through the same
HTTP API the review desk uses, with a reviewer token of its own, so that the case tiles move.

It files a case whose evidence holds and declines one whose evidence fails or whose plate
was read with little confidence (车牌不符); it notifies filed cases (the worker prints the
违法行为通知书), records a statement now and then, decides the penalty at the fine schedule's
amount and closes the case. Every third case is left alone for a person at the desk; with
``--human-reviewer`` the simulated reviewer does not run at all.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from typing import Any

import aiohttp
import numpy as np

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ReviewerHabits:
    every_s: float = 3.0  # between two looks at the queues
    per_look: int = 3  # cases moved per state and look
    leave_every: int = 3  # every n-th case (by id) is left for a person
    min_plate_confidence: float = 0.9  # below: 车牌不符
    statement_share: float = 0.2  # notified parties who make a statement (陈述申辩)
    penalize_share: float = 0.8  # notified cases decided within the demo (the rest wait)


class Desk:
    """The desk's API as a reviewer's page calls it."""

    def __init__(self, http: aiohttp.ClientSession, base_url: str, token: str):
        self.http, self.base = http, base_url
        self.headers = {"Authorization": f"Bearer {token}"}

    async def queue(self, state: str) -> list[dict[str, Any]]:
        async with self.http.get(
            f"{self.base}/desk/queue", params={"state": state}, headers=self.headers
        ) as r:
            r.raise_for_status()
            return await r.json()

    async def case(self, case_id: int) -> dict[str, Any]:
        async with self.http.get(f"{self.base}/desk/cases/{case_id}", headers=self.headers) as r:
            r.raise_for_status()
            return await r.json()

    async def act(self, case: dict[str, Any], action: str, **fields: Any) -> bool:
        body = {"action": action, "version": case["version"], **fields}
        async with self.http.post(
            f"{self.base}/desk/cases/{case['case_id']}", json=body, headers=self.headers
        ) as r:
            if r.status == 200:
                return True
            answer = await r.json(content_type=None)
            # a person at the desk may have acted first (409): theirs stands
            (log.info if r.status == 409 else log.warning)(
                "simulated reviewer: %s on case %s refused (%s)",
                action,
                case["case_id"],
                answer.get("message"),
            )
            return False


def _decide_review(case: dict[str, Any], habits: ReviewerHabits) -> tuple[str, dict[str, Any]]:
    if not case["fileable"]:
        return "decline", {
            "reason_code": "device_fault" if case["evidence"]["ok"] else "other",
            "note": case["not_fileable_because"] or "证据核验未通过",
        }
    if case["verdict"]["plate_confidence"] < habits.min_plate_confidence:
        return "decline", {"reason_code": "plate_mismatch"}
    return "file", {}


async def look_once(desk: Desk, habits: ReviewerHabits, rng: np.random.Generator) -> int:
    """One look at every queue the reviewer works; returns the actions taken."""
    done = 0
    for state in ("pending_review", "filed", "notified", "statement", "penalized"):
        mine = [c for c in await desk.queue(state) if c["case_id"] % habits.leave_every]
        for listed in mine[: habits.per_look]:
            case = await desk.case(listed["case_id"])
            if state == "pending_review":
                action, fields = _decide_review(case, habits)
            elif state == "filed":
                action, fields = "notify", {}
            elif state == "notified" and rng.random() < habits.statement_share:
                action, fields = "statement", {"note": "当事人称装载时未过磅（模拟）"}
            elif state in ("notified", "statement"):
                if rng.random() >= habits.penalize_share:
                    continue
                action = "penalize"
                fields = {"fine_cny": case["schedule_fine_cny"], "driver_name": "模拟驾驶人"}
            else:
                action, fields = "close", {}
            done += await desk.act(case, action, **fields)
    return done


async def run_reviewer(
    base_url: str,
    token: str,
    stop: asyncio.Event,
    habits: ReviewerHabits = ReviewerHabits(),
    seed: int = 3,
) -> int:
    """Work the queues until ``stop`` is set; returns the actions taken."""
    rng = np.random.default_rng(seed)
    done = 0
    async with aiohttp.ClientSession() as http:
        desk = Desk(http, base_url, token)
        while not stop.is_set():
            try:
                done += await look_once(desk, habits, rng)
            except (TimeoutError, aiohttp.ClientError) as exc:
                # the worker restarting, or its store of record down: look again later
                log.warning("simulated reviewer: the desk did not answer (%s)", exc)
            with contextlib.suppress(TimeoutError):  # time for the next look
                await asyncio.wait_for(stop.wait(), habits.every_s)
    return done
