"""Structured logs: the correlation id and the one log format of every service.

Each unit of work (a local API request, a sync stream, a pull) sets
:data:`correlation_id`; the formatters here print it on every line, so one
request's lines can be found together.

:func:`configure_logging` is the one place any process sets up logging: the
``empressa`` command (``cli.py``) hands it to each service's entry function
(node, bridge, indexer, stack), which calls it once its settings say the level
and the format: ``key=value`` lines (:class:`KeyValueFormatter`) or one JSON
object a line (:class:`JsonFormatter`), on stderr.
"""

from __future__ import annotations

import json
import logging
import os
import re
import sys
import time
from collections.abc import Callable, Iterable
from contextvars import ContextVar

correlation_id: ContextVar[str] = ContextVar("correlation_id", default="-")

ConfigureLogging = Callable[[str, bool], None]  # (level, as_json): what every service is handed


def new_id() -> str:
    """12 random hex digits (``secrets.token_hex(6)``, without importing ``secrets`` into every command)."""
    return os.urandom(6).hex()


# What an incoming X-Request-ID may be: a plain token, so it cannot forge a field of a log line
# (no space, ``=`` or quote) nor grow one without bound.
_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")


def request_id(headers: Iterable[tuple[bytes, bytes]]) -> str:
    """The request id of an HTTP request (ASGI ``headers``): its ``X-Request-ID`` when that is a plain
    token of at most 128 characters (``[A-Za-z0-9._:-]``), else 16 new random hex digits.

    The one rule for the node's local API and the indexer's API."""
    for name, value in headers:
        if name == b"x-request-id":
            text = value.decode("latin-1")
            if _REQUEST_ID.fullmatch(text):
                return text
    return os.urandom(8).hex()


class KeyValueFormatter(logging.Formatter):
    """``ts=… level=… logger=… cid=… msg="…"``: one structured line per record."""

    # The ``ts`` text of the last whole second seen: a line per local-API write would otherwise
    # pay for ``localtime`` and ``strftime`` every time.
    _second = -1
    _stamp = ""

    def format(self, record: logging.LogRecord) -> str:
        msg = record.getMessage().replace('"', "'")
        second = int(record.created)
        if second != self._second:
            self._second, self._stamp = second, time.strftime("%Y-%m-%dT%H:%M:%S", self.converter(second))
        line = (
            f"ts={self._stamp}.{int(record.msecs):03d} "
            f'level={record.levelname.lower()} logger={record.name} cid={correlation_id.get()} msg="{msg}"'
        )
        if record.exc_info:
            line += " exc=" + json.dumps(self.formatException(record.exc_info))
        return line


class JsonFormatter(logging.Formatter):
    """``{"ts", "level", "logger", "cid", "msg"[, "exc"]}``: one JSON object per record."""

    def format(self, record: logging.LogRecord) -> str:
        d = {
            "ts": record.created,
            "level": record.levelname.lower(),
            "logger": record.name,
            "cid": correlation_id.get(),
            "msg": record.getMessage(),
        }
        if record.exc_info:
            d["exc"] = self.formatException(record.exc_info)
        return json.dumps(d)


def configure_logging(level: str = "INFO", as_json: bool = False) -> None:
    """Send every record at ``level`` and above to stderr, as ``key=value`` lines or JSON objects."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if as_json else KeyValueFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # Neither format prints where a call was made, nor thread or process: do not collect them for
    # every record (the logging HOWTO's "Optimization"): ~12 -> ~10 us a log call, measured here.
    logging._srcfile = None  # type: ignore[attr-defined]
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    # libp2p logs connection churn at INFO/WARNING; keep it to real problems.
    logging.getLogger("libp2p").setLevel(logging.ERROR)
    logging.getLogger("multiaddr").setLevel(logging.ERROR)
