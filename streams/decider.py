"""Where weighings are measured and rounds decided: a helper process beside the worker, or the
worker's main thread.

The main thread carries Faust's own per-message work, decoding and the sinks. The axle kernel
and a round's site joins, plate fusion and verdict kernel (a third of its time under load) run
in a helper process meanwhile, while the main thread takes and buffers the next batches
(``streams.rounds``); so does the reading and judging of a round of gateway batches (half of
the main thread's time in gateway mode), while the previous round is written. On a machine
where the broker and Redis leave a core partly idle that is throughput the main thread alone
cannot have. Records cross as pickles (a few µs each; a raw passage's samples ~30 µs), what
the helper does is pure (``streams.deciding``).

Measuring stays in the main thread (``inline_passages``, by default every batch): the axle
kernel and evidence hashes cost more than pickling the passage to the helper, and the agent
would wait for the answer with nothing else to do. Small rounds stay too
(``inline_vehicles``): at live rates a round holds a dozen vehicles, and the round trip —
pickling both ways, waiting behind the helper's current round — takes longer than the work.
A backlog's rounds (hundreds of vehicles) go to the helper, which is where its throughput
comes from. The figures behind both are in docs/performance.md ("What limits a backlog",
"Levers tried").

Every round is decided with the site join's tolerances the Decider was made with (``join``,
from the settings), in the helper as in the main thread.

Should a helper die (killed, out of memory), the work is done in the main thread, the error is
logged and counted, and a new helper is started: a lost helper costs speed, never a verdict."""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
import signal
import threading
import time
from concurrent.futures import Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

from kernels.plates import JoinParams
from schemas.checks import Clock
from schemas.policy import Policy
from schemas.registry import Registry
from streams.deciding import (
    Decided,
    EarlyJob,
    GroupJob,
    Measured,
    decide_round,
    decide_round_at,
    judge_gateway_at,
    measure_at,
    measure_isolating,
    ready_at,
)
from streams.gateway import GatewayRound, judge_messages

log = logging.getLogger(__name__)


def helper_started(parent_pid: int) -> None:
    """In a helper: signals are the worker's to handle (it shuts down, then closes the pool; a
    Ctrl-C or SIGTERM to the process group must not kill a round half done), and a helper
    whose worker is gone (SIGKILL) exits rather than linger."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)

    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(0.5)
        os._exit(0)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


class Decider:
    """Decides rounds in ``processes`` helper processes (0: in the calling thread); batches of
    at most ``inline_passages`` and rounds of at most ``inline_vehicles`` in the calling thread."""

    def __init__(
        self,
        registry: Registry,
        policy: Policy,
        registry_path: Path,
        policy_name: str,
        processes: int,
        on_failure=lambda: None,
        inline_passages: int = 0,
        inline_vehicles: int = 0,
        on_placed=lambda where: None,
        *,
        join: JoinParams | None = None,
    ) -> None:
        self.registry, self.policy = registry, policy
        self.where = (Path(registry_path), policy_name)
        self.processes = processes
        self.on_failure = on_failure  # counts lost helpers (a metric)
        self.inline_passages, self.inline_vehicles = inline_passages, inline_vehicles
        self.on_placed = on_placed  # counts where the work was done: "inline", "helper"
        self.join = join or JoinParams()  # the site join's tolerances (``stages.join_params``)
        self.pool: ProcessPoolExecutor | None = None
        self.helper_pids: list[int] = []  # of the helpers started (for the log and tests)
        self.warming: list[Future] = []  # the helpers' start-up work (registry, kernels)

    def start(self) -> None:
        """Start the helpers and have them load the registry and kernels now, while the worker
        starts (the first round queues behind that); spawned, not forked: the worker may have
        threads by then."""
        if self.processes <= 0 or self.pool is not None:
            return
        self.pool = ProcessPoolExecutor(
            self.processes,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=helper_started,
            initargs=(os.getpid(),),
        )
        for _ in range(self.processes):  # each busy for seconds: one per process
            warming = self.pool.submit(ready_at, *self.where, self.join)
            warming.add_done_callback(self._started)
            self.warming.append(warming)

    def wait_ready(self, timeout_s: float = 120.0) -> None:
        """Until the helpers have compiled their kernels (or failed to start: logged), so that
        a worker takes its partitions only then: compiling beside live work slows both."""
        wait(self.warming, timeout=timeout_s)

    def _started(self, future) -> None:
        if future.exception() is not None:
            log.error("the deciding helper process did not start: %s", future.exception())
        else:
            self.helper_pids.append(future.result())
            log.info("deciding in helper process %d", future.result())

    async def measure(self, stage: str, records: list[dict]) -> Measured:
        """Axle loads of a batch of weighings (``streams.deciding.MEASURES``)."""
        return await self._run(
            measure_at,
            (stage, records),
            lambda: measure_isolating(stage, records, self.registry),
            len(records) <= self.inline_passages,
        )

    async def decide(
        self, cuts: list[GroupJob], settled: list[EarlyJob]
    ) -> tuple[list[Decided], list[Decided]]:
        """A round: one result per cut group, one per early group, in order."""
        if not cuts and not settled:
            return [], []
        return await self._run(
            decide_round_at,
            (cuts, settled, self.join),
            lambda: decide_round(cuts, settled, self.registry, self.policy, self.join),
            sum(len(j.vehicles) for j in cuts) + sum(len(j.vehicles) for j in settled)
            <= self.inline_vehicles,
        )

    async def judge_gateway(
        self,
        messages: list[tuple[bytes, str]],
        clock: Clock | None,
        now_s: float,
        listed: frozenset[str] = frozenset(),
    ) -> GatewayRound:
        """A round of gateway batches (value, topic) read and judged as arrays
        (``streams.gateway.judge_messages``)."""
        return await self._run(
            judge_gateway_at,
            (messages, clock, now_s, listed),
            lambda: judge_messages(messages, self.registry, self.policy, clock, now_s, listed),
        )

    async def _run(self, at_helper, args, here, small: bool = False):
        pool = self.pool
        if pool is None or small:
            self.on_placed("inline")
            return here()
        self.on_placed("helper")
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(pool, at_helper, *self.where, *args)
        except BrokenProcessPool as exc:
            if self.pool is pool:  # the first call to find it broken replaces it
                log.error("a helper process died (%s): done here, starting another", exc)
                self.on_failure()
                self.close()
                self.start()
            return here()

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=False, cancel_futures=True)
            self.pool = None
