"""The sink seam: a round's results reach every sink, the primary's answer is the round's, and
a sink that is down is waited for (the round holds its inputs) while one that fails otherwise
fails the round."""

from __future__ import annotations

import asyncio
import logging

import pytest

from sinks.seam import NOTHING_WRITTEN, RoundResults, RoundSinks, Written
from streams.metrics import Metrics
from streams.retry import Retry


class StoreDown(Exception):
    pass


class RecordingSink:
    store = "Recording"
    unavailable = (StoreDown,)

    def __init__(self, name: str, answer: Written = NOTHING_WRITTEN, down_for: int = 0):
        self.name = name
        self.answer = answer
        self.down_for = down_for
        self.calls: list[RoundResults] = []

    async def write_round(self, results: RoundResults) -> Written:
        if self.down_for:
            self.down_for -= 1
            raise StoreDown("connection refused")
        self.calls.append(results)
        return self.answer


def run(coro):
    return asyncio.run(coro)


def results() -> RoundResults:
    v = {"passage_id": "p1", "ts_us": 1}
    return RoundResults([v], alerts=[{"alert_id": "a1", "passage_id": "p1"}])


def test_every_sink_gets_the_round_and_the_primary_answers():
    primary = RecordingSink("verdicts", Written(1, 0, [], ["a1"], []))
    store = RecordingSink("cases", Written(0, 0, [], [], []))
    r = results()
    written = run(RoundSinks(primary, (store,)).write(r, Retry(Metrics())))
    assert written.alerts == ["a1"]
    assert primary.calls == [r] and store.calls == [r]


def test_a_sink_that_is_down_is_waited_for(monkeypatch, caplog):
    import streams.retry

    monkeypatch.setattr(streams.retry, "FIRST_DELAY_S", 0.001)
    primary = RecordingSink("verdicts")
    store = RecordingSink("cases", down_for=2)
    metrics = Metrics()
    with caplog.at_level(logging.WARNING):
        run(RoundSinks(primary, (store,)).write(results(), Retry(metrics)))
    assert len(store.calls) == 1
    assert metrics.sink_errors.labels("cases")._value.get() == 2
    assert "Recording unavailable" in caplog.text and "Recording is back" in caplog.text


def test_a_sink_error_that_is_not_an_outage_fails_the_round():
    class Broken(RecordingSink):
        async def write_round(self, results):
            raise ValueError("no such column")

    with pytest.raises(ValueError, match="no such column"):
        run(
            RoundSinks(RecordingSink("verdicts"), (Broken("cases"),)).write(
                results(), Retry(Metrics())
            )
        )


def test_empty_results_are_false():
    assert not RoundResults([])
    assert RoundResults([], progress={"S1": {}})
