"""What the pipeline tests share: reading Redis state and the KPI counters replay implies."""

from __future__ import annotations

import json
from typing import Any

from sinks import constants as K
from sinks.kpi import aggregate


def verdicts_in_redis(client: Any) -> dict[str, dict[str, Any]]:
    out = {}
    for key in client.keys(K.VERDICT_KEY.format(passage_id="*")):
        verdict = json.loads(client.get(key))
        out[verdict["passage_id"]] = verdict
    return out


def kpi_in_redis(client: Any) -> dict[str, dict[str, int]]:
    return {
        k.decode(): {f.decode(): int(n) for f, n in client.hgetall(k).items()}
        for k in client.keys("zc:kpi:*")
    }


def expected_kpi(verdicts: list[dict[str, Any]]) -> dict[str, dict[str, int]]:
    """The Redis KPI hashes the sink should hold after writing ``verdicts`` once."""
    expected: dict[str, dict[str, int]] = {}
    for (key, name), n in aggregate(verdicts).items():
        expected.setdefault(key, {})[name] = n
    return expected
