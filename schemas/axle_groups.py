"""A weighing's axles in groups, each beside a reference limit, for the review desk's chart.

Axles closer than the policy's ``group_spacing_max_m`` form one group (as the classification
reads them). The reference limits are the policy's informational GB 1589 values: a verdict
under 62号令 rests on the vehicle's total mass, never on these, and the desk says so. A group
the policy gives no value for (three axles or more) has no reference.
"""

from __future__ import annotations

from typing import Any

from schemas.policy import Policy


def _tandem_limit(spacing_m: float, table: list[dict[str, Any]]) -> float | None:
    # the most lenient row that admits the spacing: whether the group is a trailer's is not known
    fits = [
        row["limit"]
        for row in table
        if spacing_m >= row.get("ge", float("-inf")) and spacing_m < row.get("lt", float("inf"))
    ]
    return max(fits) if fits else None


def axle_groups(
    loads_kg: list[float], spacings_m: list[float], policy: Policy
) -> list[dict[str, Any]]:
    """``[{"axles": [1], "load_kg": ..., "reference_kg": ... or None, "kind": ...}, ...]``."""
    limits = policy.raw.get("axle_limits_kg", {})
    groups: list[list[int]] = []
    for i in range(len(loads_kg)):
        if i and spacings_m[i - 1] < policy.group_spacing_max_m:
            groups[-1].append(i)
        else:
            groups.append([i])
    out = []
    for group in groups:
        if len(group) == 1:
            # a steer axle has single tyres; another single axle may be a drive axle: lenient
            key = "single_single_tyres" if group[0] == 0 else "single_dual_tyres_drive"
            reference, kind = limits.get(key, {}).get("value"), "单轴"
        elif len(group) == 2:
            reference = _tandem_limit(spacings_m[group[0]], limits.get("tandem_by_spacing_m", []))
            kind = "二轴组"
        else:
            reference, kind = None, f"{len(group)}轴组"
        out.append(
            {
                "axles": [i + 1 for i in group],
                "kind": kind,
                "load_kg": round(sum(loads_kg[i] for i in group), 1),
                "reference_kg": reference,
            }
        )
    return out
