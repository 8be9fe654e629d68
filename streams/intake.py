"""Sorting a batch of input events by kind: WIM passages, controller vehicles, camera reads, and
what cannot be used (with a reason code for the dead-letter topic)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import schemas

KIND_OF_SCHEMA = {
    "zhichao.WimPassage": "passages",
    "zhichao.WimVehicle": "vehicles",
    "zhichao.CameraRead": "reads",
}


@dataclass
class Intake:
    """Decoded records of one batch, each with the event it came from (its ack token)."""

    passages: list[tuple[dict[str, Any], Any]] = field(default_factory=list)
    vehicles: list[tuple[dict[str, Any], Any]] = field(default_factory=list)
    reads: list[tuple[dict[str, Any], Any]] = field(default_factory=list)
    bad: list[tuple[Any, str, str]] = field(default_factory=list)  # event, reason, message


def sort_events(events: list[Any]) -> Intake:
    intake = Intake()
    for event in events:
        try:
            name, record = schemas.decode_any_wire(event.value)
        except schemas.DecodeError as exc:
            intake.bad.append((event, "undecodable", str(exc)))
            continue
        kind = KIND_OF_SCHEMA.get(name)
        if kind is None:
            intake.bad.append((event, "wrong_schema", f"{name} on {event.message.topic}"))
            continue
        getattr(intake, kind).append((record, event))
    return intake
