"""Access tokens for the pages: one or more per unit (a unit's page shows only its orders), for
the command centre, and per reviewer (审核员) for the review desk. Only the SHA-256 of a token
is stored (``zc:tokens``), so a Redis dump does not hand out logins; a token is looked up by its
digest and compared in constant time.
Revoking deletes it; an open page notices within one keep-alive (``sinks.web.server``)."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass
from typing import Any

import orjson

from sinks import constants as K

ROLES = ("unit", "command", "reviewer")


@dataclass(frozen=True)
class Principal:
    role: str  # "unit", "command" or "reviewer"
    unit_id: str | None  # the unit, for role "unit"
    label: str

    @property
    def is_command(self) -> bool:
        return self.role == "command"


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


async def issue(client: Any, role: str, unit_id: str | None = None, label: str = "") -> str:
    """A new token (shown once) for a unit, the command centre or a reviewer (``label``: the
    reviewer's name, recorded with each of their actions on a case)."""
    if role not in ROLES:
        raise ValueError(f"role must be one of {ROLES}")
    if (role == "unit") != bool(unit_id):
        raise ValueError("a unit token names its unit; other tokens name none")
    if role == "reviewer" and not label:
        raise ValueError("a reviewer token names its reviewer (the label)")
    token = secrets.token_urlsafe(32)
    record = {
        "digest": digest(token),
        "role": role,
        "unit_id": unit_id,
        "label": label or unit_id or "指挥中心",
        "issued_us": int(time.time() * 1e6),
    }
    await client.hset(K.TOKENS_KEY, record["digest"], orjson.dumps(record))
    return token


async def who(client: Any, token: str | None) -> Principal | None:
    """Whose token this is, or None (unknown, revoked, malformed)."""
    if not token or len(token) > 200:
        return None
    d = digest(token)
    raw = await client.hget(K.TOKENS_KEY, d)
    if raw is None:
        return None
    record = orjson.loads(raw)
    if not hmac.compare_digest(record["digest"], d):
        return None
    return Principal(record["role"], record["unit_id"], record["label"])


async def revoke(client: Any, token: str | None = None, unit_id: str | None = None) -> int:
    """Revoke one token, or every token of a unit; how many were revoked."""
    if token:
        return int(await client.hdel(K.TOKENS_KEY, digest(token)))
    gone = [d for d, r in (await tokens(client)).items() if unit_id and r["unit_id"] == unit_id]
    return int(await client.hdel(K.TOKENS_KEY, *gone)) if gone else 0


async def tokens(client: Any) -> dict[str, dict[str, Any]]:
    """Issued tokens by digest (the tokens themselves are not kept)."""
    raw = await client.hgetall(K.TOKENS_KEY)
    return {d.decode(): orjson.loads(r) for d, r in raw.items()}
