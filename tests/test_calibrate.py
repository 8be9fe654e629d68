"""The plate-confidence calibration: its data is checked, its fit is monotone and never claims
certainty from a few outcomes, and the command fits reviewed outcomes into a loadable map."""

from __future__ import annotations

import json

import numpy as np
import pytest
import yaml
from click.testing import CliRunner

from schemas.plate_calibration import check_map, load_plate_calibration
from zhichao.calibrate import Outcome, fit, fit_map, read_outcomes
from zhichao.cli import main


@pytest.mark.parametrize(
    ("m", "message"),
    [
        ({"score": [0.0, 0.5, 1.0], "probability": [0.1, 0.05, 0.9]}, "must not fall"),
        ({"score": [0.0, 0.5, 0.5, 1.0], "probability": [0, 0, 0, 1]}, "rise strictly"),
        ({"score": [0.1, 1.0], "probability": [0, 1]}, "from 0 to 1"),
        ({"score": [0.0, 1.0], "probability": [0, 1.2]}, "in [0, 1]"),
        ({"score": [0.0, 1.0]}, "needs 'score' and 'probability'"),
    ],
)
def test_a_broken_map_is_refused_with_the_reason(m, message):
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]")):
        check_map("camera/one_view", m)


def test_the_shipped_map_loads():
    table = load_plate_calibration()
    assert table["maps"]["camera"]["several_views"]["outcomes"] > 1000


def test_fit_is_monotone_and_smoothed():
    rng = np.random.default_rng(3)
    scores = rng.uniform(0, 1, 4000)
    right = rng.uniform(0, 1, 4000) < scores  # the true probability is the score itself
    m = fit_map(scores, right)
    check_map("fit", m)
    p = np.interp([0.1, 0.5, 0.9], m["score"], m["probability"])
    assert np.all(np.abs(p - [0.1, 0.5, 0.9]) < 0.08)
    # three right outcomes are not certainty
    few = fit_map(np.array([0.9, 0.95, 0.99]), np.array([True, True, True]))
    assert max(few["probability"]) == pytest.approx(4 / 5)
    assert fit_map(np.array([]), np.array([], dtype=bool))["probability"] == [0.0, 0.0]


def test_reviewed_outcomes_are_read_and_bad_lines_named(tmp_path):
    good = tmp_path / "reviewed.jsonl"
    good.write_text(
        json.dumps({"source": "camera", "kind": "one_view", "score": 0.8, "right": True}) + "\n"
    )
    assert read_outcomes(good) == [Outcome("camera", "one_view", 0.8, True)]
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"source": "camera", "kind": "one_view", "score": 3, "right": true}\n')
    with pytest.raises(ValueError, match=r"bad.jsonl:1: score must lie in \[0, 1\]"):
        read_outcomes(bad)


def test_the_command_fits_reviewed_outcomes_into_a_loadable_map(tmp_path):
    rng = np.random.default_rng(5)
    lines = []
    for source in ("camera", "gateway"):
        for kind in ("one_view", "several_views", "invalid_format"):
            for _ in range(200):
                s = float(rng.uniform())
                ok = bool(rng.uniform() < s) and kind != "invalid_format"
                lines.append(json.dumps({"source": source, "kind": kind, "score": s, "right": ok}))
    reviewed = tmp_path / "reviewed.jsonl"
    reviewed.write_text("\n".join(lines) + "\n")
    out = tmp_path / "cal.yaml"
    result = CliRunner().invoke(
        main,
        ["calibrate-plates", "--no-simulation", "--outcomes", str(reviewed), "--out", str(out)],
    )
    assert result.exit_code == 0, result.output
    table = load_plate_calibration(out)
    assert table["fitted_on"]["reviewed_outcomes"] == 1200
    assert max(table["maps"]["camera"]["invalid_format"]["probability"]) < 0.01
    assert yaml.safe_load(out.read_text(encoding="utf-8"))["version"].startswith("plate-calib")


def test_fit_keeps_every_source_and_kind():
    maps = fit([Outcome("camera", "one_view", 0.9, True)])
    assert set(maps) == {"camera", "gateway"}
    assert maps["gateway"]["one_view"]["probability"] == [0.0, 0.0]  # no outcomes, no claim
