"""Every @njit in kernels/ takes its flags from kernels/config.py (no hard-coded fastmath/cache)."""

from __future__ import annotations

import ast
from pathlib import Path

KERNELS = Path(__file__).resolve().parents[2] / "kernels"


def test_njit_flags_come_from_config():
    seen = 0
    for path in KERNELS.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call) and getattr(node.func, "id", "") == "njit":
                seen += 1
                kwargs = {k.arg: k.value for k in node.keywords}
                for flag in ("fastmath", "cache"):
                    value = kwargs.get(flag)
                    assert isinstance(value, ast.Attribute) and value.value.id == "config", (
                        f"{path.name}:{node.lineno}: {flag} must be config.{flag.upper()}"
                    )
    assert seen >= 5
