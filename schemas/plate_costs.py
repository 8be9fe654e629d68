"""Load the plate-distance cost table (``schemas/policy/plate-costs.yaml``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

DEFAULT_PATH = Path(__file__).resolve().parent / "policy" / "plate-costs.yaml"
REQUIRED = (
    "identical",
    "unknown_vs_any",
    "strong",
    "strong_pairs",
    "weak",
    "weak_pairs",
    "province_vs_province",
    "province_vs_local_province",
    "other_substitution",
    "indel_edge",
    "indel_suffix",
    "indel_inner",
)


def load_plate_costs(path: str | Path = DEFAULT_PATH) -> dict[str, Any]:
    with open(path, encoding="utf-8") as fh:
        table = yaml.safe_load(fh)
    missing = [k for k in REQUIRED if k not in table]
    if missing:
        raise ValueError(f"{Path(path).name}: missing {', '.join(missing)}")
    for key in REQUIRED:
        if key.endswith("_pairs"):
            bad = [p for p in table[key] if not (isinstance(p, str) and len(p) == 2)]
            if bad:
                raise ValueError(f"{Path(path).name}: {key} entries are two characters: {bad}")
        elif not (isinstance(table[key], int | float) and 0 <= table[key] <= 10):
            raise ValueError(f"{Path(path).name}: {key} must be a cost in [0, 10]")
    return table
