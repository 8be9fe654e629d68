"""``zhichao up --for SECONDS``: the operators' smoke test, run as CI runs it."""

from __future__ import annotations

import json
import subprocess
import sys


def test_up_for_runs_the_whole_stack_and_reports_one_json_line():
    result = subprocess.run(  # noqa: S603
        [sys.executable, "-m", "zhichao.cli", "up", "--for", "25", "--speedup", "10"],
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 1, result.stdout
    report = json.loads(lines[0])
    assert report["passages_in"] > 200
    assert report["verdicts_out"] == report["passages_in"], result.stderr[-2000:]
    assert report["dead_letters"] == 0
    assert report["p99_weigh_to_verdict_ms"] is not None
    assert report["devices_total"] == 45 and report["devices_online"] >= 40
    assert "worker ready" in result.stderr
