"""Redis with AUTH over TLS only, configured from settings alone (``ZHICHAO_REDIS_DSN`` with
``rediss://`` and the CA file): the worker writes its verdicts, evidence and orders through it,
and the server refuses a client without the password. (Kafka SASL/TLS is wired the same way,
``streams/kafka_security.py``; the embedded broker cannot be given users, so it is tested on
the options only, ``tests/test_settings.py``.)"""

from __future__ import annotations

import asyncio
import subprocess
import time

import pytest
import redis

from sim.config import SimConfig
from sim.publish import events_of
from sim.traffic import CitySimulator
from sinks import constants as K
from streams.embedded import embedded_stack, redis_server
from tests.integration.helpers import publish_events
from zhichao.up import start_worker, stop_worker

PARTITIONS = 2
VEHICLES = 60
PASSWORD = "tls-and-auth-for-test"


def self_signed(work) -> tuple:
    cert, key = work / "cert.pem", work / "key.pem"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
            "-keyout", str(key), "-out", str(cert), "-subj", "/CN=127.0.0.1",
            "-addext", "subjectAltName=IP:127.0.0.1",
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return cert, key


def test_the_worker_runs_on_a_redis_with_auth_over_tls(tmp_path, registry):
    cert, key = self_signed(tmp_path)
    secure = redis_server(tmp_path, password=PASSWORD, tls=(cert, key)).start()
    dsn = f"rediss://:{PASSWORD}@127.0.0.1:{secure.port}/0?ssl_ca_certs={cert}"
    try:
        client = redis.Redis.from_url(dsn)
        assert client.ping()
        with pytest.raises(redis.exceptions.AuthenticationError):
            redis.Redis.from_url(f"rediss://127.0.0.1:{secure.port}/0?ssl_ca_certs={cert}").ping()
        with pytest.raises(redis.exceptions.ConnectionError):  # no plain-text port
            redis.Redis(port=secure.port, password=PASSWORD, socket_timeout=2).ping()
        traffic = CitySimulator(SimConfig(vehicles=VEHICLES, seed=3), registry).run()
        (tmp_path / "stack").mkdir()
        with embedded_stack(tmp_path / "stack") as stack:
            worker = start_worker(
                stack, PARTITIONS, tmp_path / "worker.log", extra_env={"ZHICHAO_REDIS_DSN": dsn}
            )
            try:
                asyncio.run(publish_events(events_of(traffic), stack.bootstrap, PARTITIONS))
                deadline = time.monotonic() + 180
                while time.monotonic() < deadline and worker.poll() is None:
                    if client.xlen(K.VERDICT_STREAM) >= VEHICLES:
                        break
                    time.sleep(1)
                plain = redis.Redis.from_url(stack.redis_dsn)
                assert plain.xlen(K.VERDICT_STREAM) == 0  # nothing went to the stack's own Redis
            finally:
                stop_worker(worker)
        log = (tmp_path / "worker.log").read_text(errors="replace")
        assert client.xlen(K.VERDICT_STREAM) == VEHICLES, log[-3000:]
        assert PASSWORD not in log  # the DSN's secret is not logged
    finally:
        secure.stop()
