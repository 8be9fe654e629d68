"""Devices that break the timing every "known until" rests on, for operators (运维):

- **late**: inputs published more than the slack after capture. Their site may already have
  been taken as complete and decided without them (a vehicle without its plate read is decided
  unidentified, never fined on a guess).
- **clock ahead**: a device whose records are stamped well ahead of what the other inputs have
  reached (its clock runs fast: no NTP, a wrong time zone). Its partition's "known until"
  follows its clock, so the sites on that partition are cut before their other inputs arrive.

Counted between two judgements of the devices (``judge_devices`` in ``streams.agents.devices``),
which turn them into alerts (``streams.alerts.device_alerts``)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from schemas.units import US


@dataclass
class DeviceTiming:
    ahead_alert_s: float = 30.0  # a record this far ahead of the other inputs is a fast clock
    late: dict[str, int] = field(default_factory=dict)  # device -> inputs published late
    ahead: dict[str, float] = field(default_factory=dict)  # device -> most seconds ahead

    def note_late(self, counts: dict[str, int]) -> None:
        for device_id, n in counts.items():
            self.late[device_id] = self.late.get(device_id, 0) + n

    def check_ahead(self, stamped: Iterable[tuple[int, str]], others_us: int) -> None:
        """``stamped``: (event time, device) of records just read; ``others_us``: the newest
        time the other inputs have reached (0 when that means nothing, as in a backlog, whose
        partitions are read unevenly)."""
        if not others_us:
            return
        bound = others_us + self.ahead_alert_s * US
        for ts_us, device_id in stamped:
            if ts_us > bound:
                ahead_s = (ts_us - others_us) / US
                if ahead_s > self.ahead.get(device_id, 0.0):
                    self.ahead[device_id] = ahead_s

    def take(self) -> tuple[dict[str, int], dict[str, float]]:
        """What was counted since the last call, and start again."""
        late, ahead = self.late, self.ahead
        self.late, self.ahead = {}, {}
        return late, ahead
