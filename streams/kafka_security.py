"""Kafka security from settings, for Faust (``broker_credentials``) and for the aiokafka
clients we make ourselves (topic creation, the simulator's producer): PLAINTEXT, SSL (server
verified with ``kafka_ssl_cafile`` or the system CAs), SASL_PLAINTEXT and SASL_SSL with PLAIN or
SCRAM-SHA-256/512."""

from __future__ import annotations

import ssl
from typing import Any

import faust

from schemas.settings import Settings


def ssl_context(settings: Settings) -> ssl.SSLContext | None:
    if not settings.kafka_security_protocol.endswith("SSL"):
        return None
    return ssl.create_default_context(cafile=settings.kafka_ssl_cafile or None)


def faust_credentials(settings: Settings) -> Any:
    """What ``faust.App(broker_credentials=...)`` takes, or None for PLAINTEXT."""
    protocol = settings.kafka_security_protocol
    if protocol == "PLAINTEXT":
        return None
    if protocol == "SSL":
        return faust.SSLCredentials(ssl_context(settings))
    credentials = faust.SASLCredentials(
        username=settings.kafka_sasl_username,
        password=settings.kafka_sasl_password,
        ssl_context=ssl_context(settings),
        mechanism=settings.kafka_sasl_mechanism,
    )
    credentials.protocol = faust.types.auth.AuthProtocol(protocol)
    return credentials


def aiokafka_options(settings: Settings) -> dict[str, Any]:
    """Keyword arguments for an aiokafka client (producer, consumer, admin)."""
    protocol = settings.kafka_security_protocol
    options: dict[str, Any] = {"security_protocol": protocol}
    if protocol.endswith("SSL"):
        options["ssl_context"] = ssl_context(settings)
    if protocol.startswith("SASL"):
        options |= {
            "sasl_mechanism": settings.kafka_sasl_mechanism,
            "sasl_plain_username": settings.kafka_sasl_username,
            "sasl_plain_password": settings.kafka_sasl_password,
        }
    return options
