"""The evidence chain: a chain of 10,000 records verifies, and every single-byte change,
deletion and swap is found at the record where it happened."""

from __future__ import annotations

import random

import pytest

from schemas.policy import load_policy
from sim.config import SimConfig
from sim.traffic import CitySimulator
from sinks.evidence import (
    GENESIS,
    EvidenceChain,
    EvidenceKeyMissing,
    evidence_body,
    parse,
    verify_chain,
)
from streams.stages import decide_with_support, measure_passages

KEY = b"test-evidence-key"
RECORDS = 10_000


@pytest.fixture(scope="module")
def chain_of_10k(registry):
    """10,000 records on one site's chain, built from real verdicts (repeated as needed)."""
    traffic = CitySimulator(SimConfig(vehicles=300, seed=7), registry).run()
    measured, _ = measure_passages(traffic.passages, registry)
    verdicts, support = decide_with_support(
        measured, traffic.reads, registry, load_policy(registry.policy)
    )
    bodies = [evidence_body(v, s, registry) for v, s in zip(verdicts, support, strict=True)]
    chain = EvidenceChain(KEY)
    pairs = []
    for i in range(RECORDS):
        body = bodies[i % len(bodies)]
        verdict = {**body["verdict"], "site_id": "S-TEST", "passage_id": f"P-{i}"}
        pairs.append((verdict, {**body, "verdict": verdict}))
    links = chain.extend(pairs)
    return [link.line.encode() for link in links]


def _check(lines, i, end, replacement):
    """Verify the chain with ``lines[i:end]`` replaced, from record i-1 to one record after the
    change: a change at record i shows there, so checking this window is checking the whole
    chain (10,000 whole-chain checks would take minutes). Returns where the problem is."""
    lo = max(i - 1, 0)
    prev = GENESIS if lo == 0 else parse(lines[lo - 1])[0]
    window = [*lines[lo:i], *replacement, *lines[end : end + 1]]
    _, problem = verify_chain(window, KEY, lo + 1, prev)
    assert problem is not None, f"change at record {i} went unnoticed"
    return lo + problem.index, problem.reason


def test_an_intact_chain_verifies(chain_of_10k):
    assert verify_chain(chain_of_10k, KEY) == (RECORDS, None)


def test_the_whole_chain_names_the_first_altered_record(chain_of_10k):
    lines = list(chain_of_10k)
    lines[6000] = lines[6000].replace(b'"gvw_kg":', b'"gvw_kg":1', 1)
    n, problem = verify_chain(lines, KEY)
    assert n == 6000 and problem.index == 6000 and problem.reason == "altered"


def test_every_single_byte_change_is_detected(chain_of_10k):
    rng = random.Random(1)
    lines = chain_of_10k
    for i in range(RECORDS):
        line = bytearray(lines[i])
        pos = rng.randrange(len(line))
        line[pos] = (line[pos] + rng.randrange(1, 256)) % 256  # a different byte, anywhere
        at, _ = _check(lines, i, i + 1, [bytes(line)])
        assert at == i, f"byte {pos} of record {i} changed, reported at {at}"


def test_every_deletion_is_detected(chain_of_10k):
    lines = chain_of_10k
    for i in range(RECORDS - 1):  # removing the last record leaves a shorter, valid chain
        assert _check(lines, i, i + 1, []) == (i, "removed_or_reordered")


def test_every_swap_of_neighbours_is_detected(chain_of_10k):
    lines = chain_of_10k
    for i in range(RECORDS - 1):
        assert _check(lines, i, i + 2, [lines[i + 1], lines[i]]) == (i, "removed_or_reordered")


def test_a_consistently_rewritten_chain_without_the_key_is_forged(chain_of_10k):
    forger = EvidenceChain(b"not-the-key")
    lines = [parse(line)[3] for line in chain_of_10k[:5]]
    rewritten = forger.extend(
        (
            {"site_id": "S-TEST", "passage_id": f"P-{i}"},
            {k: v for k, v in b.items() if k not in ("seq", "prev")},
        )
        for i, b in enumerate(lines)
    )
    n, problem = verify_chain([link.line for link in rewritten], KEY)
    assert n == 0 and problem.reason == "forged"


def test_a_worker_without_a_key_refuses_to_seal():
    with pytest.raises(EvidenceKeyMissing, match="ZHICHAO_EVIDENCE_KEY"):
        EvidenceChain(b"")
