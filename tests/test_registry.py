"""The site registry: the example city has what the issue asks for; errors name the entry."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
import yaml

from schemas.registry import CHINA, EXAMPLE_CITY, RegistryError, load_registry


def test_example_city_has_the_required_network(registry):
    weigh = registry.weigh_sites
    assert 5 <= len(weigh) <= 8
    assert len({s.road for s in weigh}) >= 3
    assert any(s.expressway for s in weigh) and any(not s.expressway for s in weigh)
    assert all(2 <= s.lanes <= 3 for s in weigh)
    for site in weigh:
        cams = registry.cameras_of_site(site.id)
        for lane in range(1, site.lanes + 1):
            views = {c.view for c in cams if c.lane == lane}
            assert {"front", "rear"} <= views, (site.id, lane)
    assert len(registry.checkpoints) >= 10
    assert {d.accuracy_class for d in registry.wim_devices.values()} >= {5.0, 10.0}
    assert len(registry.interception_points) >= 3
    assert len(registry.units) >= 5


def test_one_certificate_is_expired_in_november_2026(registry):
    ts = int(dt.datetime(2026, 11, 20, 8, tzinfo=CHINA).timestamp())
    expired = [d.id for d in registry.wim_devices.values() if not d.cert_valid_at(ts * 10**6)]
    assert expired == ["SX-S308-K045-U-WIM"]


def test_certificate_window_is_inclusive_by_china_date(registry):
    device = registry.wim_devices["SX-S308-K045-U-WIM"]  # valid to 2026-10-31
    last_valid = device.cert_to_us - 1
    assert device.cert_valid_at(last_valid)
    assert not device.cert_valid_at(device.cert_to_us)
    assert device.cert_valid_at(device.cert_from_us)
    assert not device.cert_valid_at(device.cert_from_us - 1)


def _broken(tmp_path: Path, mutate) -> Path:
    raw = yaml.safe_load(EXAMPLE_CITY.read_text(encoding="utf-8"))
    mutate(raw)
    path = tmp_path / "city.yaml"
    path.write_text(yaml.safe_dump(raw, allow_unicode=True), encoding="utf-8")
    return path


def _device(raw, device_id):
    return next(d for d in raw["devices"] if d["id"] == device_id)


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (
            lambda r: _device(r, "SX-G104-K1234-U-WIM").update(cert_valid_to="2025-01-01"),
            r"devices\[0\] \(SX-G104-K1234-U-WIM\): cert_valid_to 2025-01-01 is before",
        ),
        (
            lambda r: _device(r, "SX-G104-K1234-U-WIM").update(cert_valid_from="soon"),
            r"cert_valid_from must be a date",
        ),
        (
            lambda r: _device(r, "SX-G104-K1234-U-CAM-F1").update(site="NOWHERE"),
            r"\(SX-G104-K1234-U-CAM-F1\): site NOWHERE is not in sites",
        ),
        (
            lambda r: _device(r, "SX-G104-K1234-U-CAM-F1").update(lane=7),
            r"lane 7 is not a lane of SX-G104-K1234-U",
        ),
        (
            lambda r: _device(r, "SX-G104-K1234-U-CAM-F1").update(view="sideways"),
            r"view must be one of",
        ),
        (lambda r: r["sites"][0].update(lanes=0), r"sites\[0\] .*lanes must be a whole number"),
        (lambda r: r["sites"][1].update(id=r["sites"][0]["id"]), r"duplicate id"),
        (lambda r: r["units"][0].update(home="IP-NOWHERE"), r"home IP-NOWHERE"),
        (
            lambda r: r["units"][0]["travel_s"].update({"IP-G104-K20": -5}),
            r"travel_s\[IP-G104-K20\]",
        ),
        (
            lambda r: r["devices"].remove(_device(r, "SX-G104-K1234-U-WIM")),
            r"site SX-G104-K1234-U must have exactly one WIM device",
        ),
        (
            lambda r: r["sources"][0].update(road="G999"),
            r"sources\[0\] \(SRC-QQ-SAND\): road G999 is not in roads",
        ),
        (lambda r: r["sources"][1].update(id="SRC-QQ-SAND"), r"sources\[1\].*duplicate id"),
        (lambda r: r["sources"][0].pop("km"), r"sources\[0\].*km"),
    ],
)
def test_malformed_registry_is_rejected_naming_the_entry(tmp_path, mutate, message):
    with pytest.raises(RegistryError, match=message):
        load_registry(_broken(tmp_path, mutate))


def test_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(RegistryError, match="cannot read registry"):
        load_registry(tmp_path / "absent.yaml")
