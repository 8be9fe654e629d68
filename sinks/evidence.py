"""Tamper-evident evidence records (证据链): one per enforceable verdict, chained per site.

A record is one line of text: ``<sha256 hex> <hmac hex> <body>``. The body is the canonical JSON
(sorted keys, compact, UTF-8) of what a fine rests on: the measurement, the digest of the raw
sensor samples, the plates and the camera reads used, the WIM device and its 检定 certificate,
the policy version, the verdict, the record's sequence number in its site's chain and the hash
of the previous record. The hash is SHA-256 of the body bytes; the HMAC is HMAC-SHA256 of the
same bytes with the configured evidence key. So:

- changing any byte of a record breaks its hash (or its HMAC, or the line's form);
- removing, inserting or reordering records breaks the ``seq``/``prev`` links;
- rewriting a whole tail consistently needs the key (the HMAC).

``verify_chain`` names the first record that fails and why; ``zhichao verify`` runs it.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import orjson

from schemas.registry import Registry
from sinks import constants as K

GENESIS = "0" * 64  # the "previous hash" of a chain's first record
CHAIN_KEY = K.EVIDENCE_CHAIN_KEY
HEADS_KEY = K.EVIDENCE_HEADS_KEY


class EvidenceKeyMissing(ValueError):
    """No evidence key is configured: enforceable records could not be authenticated."""


def canonical(body: dict[str, Any]) -> bytes:
    return orjson.dumps(body, option=orjson.OPT_SORT_KEYS)


def evidence_body(
    verdict: dict[str, Any], support: dict[str, Any], registry: Registry
) -> dict[str, Any]:
    """What a fine rests on, for one verdict; ``support`` holds the samples digest and the ids
    of the reads used (``streams.stages.decide_with_support``)."""
    device = registry.wim_devices.get(verdict["device_id"])
    return {
        "verdict": verdict,
        "samples_sha256": support["samples_sha256"],
        "read_ids": list(support["read_ids"]),
        "device": None
        if device is None
        else {
            "id": device.id,
            "accuracy_class": device.accuracy_class,
            "cert_no": device.cert_no,
            "cert_valid_from": device.cert_valid_from.isoformat(),
            "cert_valid_to": device.cert_valid_to.isoformat(),
        },
        "policy_version": verdict["policy_version"],
        # the measured vehicle and the camera reads it was matched to: the review decides the
        # weighing again from them (absent where the verdict came from a gateway's batch)
        **{k: support[k] for k in ("measurement", "reads") if k in support},
    }


def seal(body: dict[str, Any], seq: int, prev: str, key: bytes) -> tuple[str, str]:
    """The record line for ``body`` at position ``seq`` after ``prev``, and its hash."""
    data = canonical({**body, "seq": seq, "prev": prev})
    digest = hashlib.sha256(data).hexdigest()
    mac = hmac.new(key, data, hashlib.sha256).hexdigest()
    return f"{digest} {mac} {data.decode()}", digest


@dataclass(frozen=True)
class Link:
    """A record to append: valid only if the chain's head is still ``(seq - 1, prev)``."""

    site_id: str
    passage_id: str
    seq: int
    prev: str
    digest: str
    line: str

    @property
    def expected_head(self) -> str:
        return "" if self.seq == 1 else f"{self.seq - 1} {self.prev}"

    @property
    def new_head(self) -> str:
        return f"{self.seq} {self.digest}"


@dataclass
class EvidenceChain:
    """The worker's view of every site's chain head; records are appended by the sink's script
    only where the head in Redis is still the one they were sealed after."""

    key: bytes
    heads: dict[str, tuple[int, str]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.key:
            raise EvidenceKeyMissing(
                "no evidence key: set ZHICHAO_EVIDENCE_KEY (a long random secret) so that "
                "evidence records can be authenticated"
            )

    def restore(self, heads: dict[str, str]) -> None:
        """Take the heads as stored in Redis (``"<seq> <hash>"`` per site)."""
        for site_id, head in heads.items():
            seq, digest = head.split(" ")
            self.heads[site_id] = (int(seq), digest)

    def extend(self, sealed: Iterable[tuple[dict[str, Any], dict[str, Any]]]) -> list[Link]:
        """Seal (verdict, body) pairs onto their sites' chains, in order."""
        return [self._link(v["site_id"], v["passage_id"], body) for v, body in sealed]

    def reseal(self, links: Iterable[Link]) -> list[Link]:
        """The same records sealed again on the current heads (their chain moved before they
        were appended): same body, new ``seq`` and ``prev``."""
        out = []
        for link in links:
            body = {k: v for k, v in parse(link.line)[3].items() if k not in ("seq", "prev")}
            out.append(self._link(link.site_id, link.passage_id, body))
        return out

    def _link(self, site: str, passage_id: str, body: dict[str, Any]) -> Link:
        seq, prev = self.heads.get(site, (0, GENESIS))
        line, digest = seal(body, seq + 1, prev, self.key)
        self.heads[site] = (seq + 1, digest)
        return Link(site, passage_id, seq + 1, prev, digest, line)


@dataclass(frozen=True)
class Problem:
    """The first record of a chain that does not verify."""

    index: int  # position in what was read, from 0
    seq: int | None  # the record's own sequence number, if it could be read
    reason: str  # altered, removed_or_reordered, forged, unreadable
    message: str


def parse(line: str | bytes) -> tuple[str, str, bytes, dict[str, Any]]:
    raw_line = line if isinstance(line, bytes) else line.encode()
    digest, mac, raw = raw_line.split(b" ", 2)
    return digest.decode("ascii"), mac.decode("ascii"), raw, orjson.loads(raw)


def verify_chain(
    lines: Iterable[str | bytes], key: bytes, start_seq: int = 1, start_prev: str = GENESIS
) -> tuple[int, Problem | None]:
    """Check records in order; returns how many verified and the first problem, if any.
    ``start_seq``/``start_prev`` check a part of a chain that does not begin at its first
    record."""
    expect_seq, expect_prev = start_seq, start_prev
    n = 0
    for index, line in enumerate(lines):
        try:
            digest, mac, raw, body = parse(line)
            seq, prev = body["seq"], body["prev"]
        except (ValueError, KeyError, TypeError, UnicodeError) as exc:
            return n, Problem(index, None, "unreadable", f"record {index} cannot be read: {exc}")
        if hashlib.sha256(raw).hexdigest() != digest:
            return n, Problem(index, seq, "altered", f"record seq {seq}: content does not match")
        good_mac = hmac.new(key, raw, hashlib.sha256).hexdigest()
        if not hmac.compare_digest(good_mac, mac):
            return n, Problem(index, seq, "forged", f"record seq {seq}: HMAC does not match")
        if seq != expect_seq or prev != expect_prev:
            return n, Problem(
                index,
                seq,
                "removed_or_reordered",
                f"record seq {seq} follows seq {expect_seq - 1}"
                + ("" if prev == expect_prev else " but names another record as previous"),
            )
        expect_seq, expect_prev = seq + 1, digest
        n += 1
    return n, None


def chain_lines(client: Any, site_id: str, batch: int = 5000) -> Iterator[bytes]:
    """A site's records from Redis, in order (synchronous client)."""
    key, last = CHAIN_KEY.format(site_id=site_id), "-"
    while True:
        entries = client.xrange(key, min=last, max="+", count=batch + (last != "-"))
        if last != "-":
            entries = entries[1:]
        if not entries:
            return
        for _, fields in entries:
            yield fields[b"record"]
        last = entries[-1][0].decode()


@dataclass(frozen=True)
class EvidenceCheck:
    """Whether a case's evidence record holds: found in its site's chain, every record up to it
    intact (hash, HMAC, links), and sealed on the verdict the case was opened on."""

    ok: bool
    reason: str  # intact, missing, differs, or the chain's problem (altered, forged, ...)
    message: str
    seq: int | None = None


def check_record(
    lines: Iterable[str | bytes], key: bytes, passage_id: str, evidence_hash: str
) -> EvidenceCheck:
    """The check of one passage's record among its site's chain ``lines`` (in order)."""
    lines = list(lines)
    at = None
    for index, line in enumerate(lines):
        try:
            _, _, _, body = parse(line)
        except (ValueError, TypeError, UnicodeError):
            continue  # judged as part of the chain below, if it lies before the record
        if isinstance(body, dict) and (body.get("verdict") or {}).get("passage_id") == passage_id:
            at = index
            break
    if at is None:
        return EvidenceCheck(False, "missing", "证据链中没有该称重的证据记录")
    _, problem = verify_chain(lines[: at + 1], key)
    if problem is not None:
        return EvidenceCheck(False, problem.reason, f"证据链校验未通过：{problem.message}")
    body = parse(lines[at])[3]
    if body["verdict"].get("evidence_hash") != evidence_hash:
        return EvidenceCheck(False, "differs", "证据记录与案件的判定不一致", body["seq"])
    return EvidenceCheck(True, "intact", f"证据记录完好（第 {body['seq']} 条）", body["seq"])


async def site_lines(client: Any, site_id: str, batch: int = 5000) -> list[bytes]:
    """A site's records from Redis, in order (asynchronous client)."""
    key, last, out = CHAIN_KEY.format(site_id=site_id), "-", []
    while True:
        entries = await client.xrange(key, min=last, max="+", count=batch + (last != "-"))
        if last != "-":
            entries = entries[1:]
        if not entries:
            return out
        out += [fields[b"record"] for _, fields in entries]
        last = entries[-1][0].decode()


def check_stored(
    key: bytes,
    line: str | None,
    before: str | None,
    after: str | None,
    evidence_hash: str,
) -> EvidenceCheck:
    """The check of a case's record as the store of record keeps it: its hash and HMAC, and its
    links to the record it names as previous (``before``; none for a chain's first record) and
    to the record that names it (``after``, if one was sealed since), each verified too."""
    if line is None:
        return EvidenceCheck(False, "missing", "记录库中没有该称重的证据记录")
    try:
        body = parse(line)[3]
        seq, prev = int(body["seq"]), str(body["prev"])
    except (ValueError, KeyError, TypeError, UnicodeError) as exc:
        return EvidenceCheck(False, "unreadable", f"证据记录无法读取：{exc}")
    chain, start = [line], (seq, prev)
    if seq > 1:
        if before is None:
            return EvidenceCheck(
                False, "removed_or_reordered", f"第 {seq} 条证据记录的前一条不在记录库中", seq
            )
        try:
            first = parse(before)[3]
            start = (int(first["seq"]), str(first["prev"]))
        except (ValueError, KeyError, TypeError, UnicodeError) as exc:
            return EvidenceCheck(False, "unreadable", f"前一条证据记录无法读取：{exc}", seq)
        chain.insert(0, before)
    elif prev != GENESIS:
        return EvidenceCheck(False, "removed_or_reordered", "链首记录指向了另一条记录", seq)
    if after is not None:
        chain.append(after)
    _, problem = verify_chain(chain, key, *start)
    if problem is not None:
        return EvidenceCheck(False, problem.reason, f"证据链校验未通过：{problem.message}", seq)
    if (body.get("verdict") or {}).get("evidence_hash") != evidence_hash:
        return EvidenceCheck(False, "differs", "证据记录与案件的判定不一致", seq)
    return EvidenceCheck(True, "intact", f"证据记录完好（第 {seq} 条，前后链接无误）", seq)


async def records_of(client: Any, passages: Iterable[tuple[str, str]]) -> dict[str, bytes]:
    """The records of ``(passage_id, site_id)`` pairs from the live chains, found by each
    passage's mark (which names the record's place in its site's stream). A passage whose mark
    has expired, or was made before marks named a place, is left out."""
    passages = list(passages)
    if not passages:
        return {}
    marks = await client.mget([K.EVIDENCE_MARK_KEY.format(passage_id=p) for p, _ in passages])
    pipe = client.pipeline(transaction=False)
    asked = []
    for (passage_id, site_id), mark in zip(passages, marks, strict=True):
        parts = mark.decode().split(" ") if mark else []
        if len(parts) == 3:
            pipe.xrange(CHAIN_KEY.format(site_id=site_id), min=parts[2], max=parts[2])
            asked.append(passage_id)
    found = await pipe.execute() if asked else []
    return {p: entries[0][1][b"record"] for p, entries in zip(asked, found, strict=True) if entries}
