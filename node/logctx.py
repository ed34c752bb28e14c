"""Correlation ids for structured logs.

Each unit of work (a local API request, a sync stream, a pull) sets
:data:`correlation_id`; the log formatter configured in ``cli.py`` prints it on
every line, so one request's lines can be found together.
"""

from __future__ import annotations

import secrets
from contextvars import ContextVar

correlation_id: ContextVar[str] = ContextVar("correlation_id", default="-")


def new_id() -> str:
    return secrets.token_hex(6)
