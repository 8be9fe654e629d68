"""The dispatch order's contract (处置闭环), shared by the worker, the sinks and the pages: who
the command centre is, the statuses an order is live in, a unit's state, a change to an order
(what ``streams.order_life`` decides and ``sinks.order_sink`` writes compare-and-set), and the
refusal of a change that is not allowed."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

COMMAND_CENTRE = "command_centre"  # the unit id of the command centre (指挥中心)
# statuses: open (等待接受) -> accepted (已接受) -> arrived (已到达) -> closed (已处置);
# open -> escalated (转派: a successor order took over)
LIVE = ("open", "accepted", "arrived")


@dataclass(frozen=True)
class UnitState:
    """Where a unit is and whether it can take an order (from ``dispatch.feedback``)."""

    unit_id: str
    available: bool = True
    at: str | None = None  # an interception point id; None: at its home point


class OrderRefused(ValueError):
    """A change the order's life does not allow, with a reason code for dead letters and pages."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class Change:
    """An order afterwards, the status it must still have when written, and its side effects."""

    order: dict[str, Any]
    expected_status: str
    unit_state: dict[str, Any] | None = None  # for zc:units (unit id -> state)
    counters: dict[str, float] = field(default_factory=dict)
    drift: tuple[str, float] | None = None  # (WIM device, (WIM - static) / static in %)
    closes: bool = False
    successor: dict[str, Any] | None = None
