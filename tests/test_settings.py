"""One settings object: defaults, then ZHICHAO_* environment, then explicit overrides."""

from __future__ import annotations

from pathlib import Path

import pytest

from schemas.settings import Settings


def test_environment_then_overrides():
    env = {
        "ZHICHAO_PARTITIONS": "12",
        "ZHICHAO_BROKER_URL": "kafka://k1:9092;k2:9092",
        "ZHICHAO_REGISTRY_PATH": "/etc/zhichao/city.yaml",
    }
    s = Settings.load({"partitions": 3}, environ=env)
    assert s.partitions == 3
    assert s.broker_url == "kafka://k1:9092;k2:9092"
    assert s.registry_path == Path("/etc/zhichao/city.yaml")


@pytest.mark.parametrize(("raw", "want"), [("1", True), ("on", True), ("0", False), ("no", False)])
def test_switches_read_from_the_environment(raw, want):
    assert Settings.load(environ={"ZHICHAO_EARLY_DECISIONS": raw}).early_decisions is want


def test_early_decisions_are_on_unless_turned_off():
    assert Settings.load(environ={}).early_decisions is True


def test_secrets_are_not_printed():
    s = Settings.load({"kafka_sasl_password": "hunter2"}, environ={})
    assert "hunter2" not in repr(s)


@pytest.mark.parametrize(
    ("overrides", "env", "message"),
    [
        ({}, {"ZHICHAO_PARTITIONS": "many"}, "ZHICHAO_PARTITIONS='many' is not a valid int"),
        ({"partitions": 0}, {}, "partitions must be >= 1"),
        ({"kafka_security_protocol": "SASL_SSL"}, {}, "SASL needs"),
        ({"redis_dsn": "http://x"}, {}, "redis_dsn"),
        ({"no_such": 1}, {}, "unknown setting"),
        ({}, {"ZHICHAO_EARLY_DECISIONS": "maybe"}, "is not a valid bool"),
        ({"publish_slack_s": -1.0}, {}, "publish_slack_s"),
    ],
)
def test_bad_settings_are_rejected(overrides, env, message):
    with pytest.raises(ValueError, match=message):
        Settings.load(overrides, environ=env)


@pytest.mark.parametrize("protocol", ["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"])
def test_kafka_security_reaches_faust_and_aiokafka(protocol):
    from streams.kafka_security import aiokafka_options, faust_credentials

    sasl = protocol.startswith("SASL")
    s = Settings.load(
        {
            "kafka_security_protocol": protocol,
            "kafka_sasl_mechanism": "SCRAM-SHA-512" if sasl else "",
            "kafka_sasl_username": "zhichao" if sasl else "",
            "kafka_sasl_password": "s3cret" if sasl else "",
        },
        environ={},
    )
    options = aiokafka_options(s)
    credentials = faust_credentials(s)
    assert options["security_protocol"] == protocol
    assert ("ssl_context" in options) == protocol.endswith("SSL")
    if protocol == "PLAINTEXT":
        assert credentials is None
    else:
        assert credentials.protocol.value == protocol
    if sasl:
        assert options["sasl_plain_password"] == "s3cret"
        assert credentials.mechanism.value == "SCRAM-SHA-512"
        assert credentials.username == "zhichao"
