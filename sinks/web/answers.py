"""JSON answers of the desk and the register, one form for both: a body as JSON, and a refusal
``{"error", "message"}`` that is logged with who was refused."""

from __future__ import annotations

import logging
from typing import Any

import orjson
from aiohttp import web

from sinks.web import access

log = logging.getLogger("sinks.web")


def json_answer(
    data: Any, status: int = 200, headers: dict[str, str] | None = None
) -> web.Response:
    body = orjson.dumps(data, default=str)
    return web.Response(body=body, status=status, content_type="application/json", headers=headers)


def refusal(
    status: int, error: str, message: str, who: access.Principal | None, where: str
) -> web.Response:
    """A 4xx answer, logged: ``where`` names the page (desk, register)."""
    log.warning("%s: %s (%s) for %s", where, error, message, who.label if who else "anonymous")
    return json_answer({"error": error, "message": message}, status)
