"""For the whole suite (tests and benchmarks): workers started by it take the simulated archive.

Its traffic is dated from a fixed day (``sim.config.ARCHIVE_START``); a worker refuses inputs
older than ``max_event_age_s`` (400 days) as ``bad_timestamp``. Past that age every input of
the archive would be dead-lettered, so the workers that tests start (subprocesses inherit the
environment) are told to accept it: the suite does not expire a year after it was written."""

from __future__ import annotations

import os
import time

from schemas.settings import Settings
from sim.config import archive_age_s


def pytest_configure(config):
    age = archive_age_s(time.time())
    if age > Settings().max_event_age_s:
        os.environ["ZHICHAO_MAX_EVENT_AGE_S"] = str(age)
