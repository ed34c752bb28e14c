"""What ``empressa up`` tells a person once the stack is ready: where everything is and how to stop it.

The log lines on stderr are for operators and log files; this is the first
screen for someone who just ran ``./dev up --demo``. It goes to stdout, as a
short block of text, or with ``--json`` as one JSON object (and nothing else on
stdout), so a script can read the same facts::

    {"marketplace_url", "api_docs_url", "api_url", "my_library": {"link", "expires_in",
     "data_dir", "command"} | null, "chain": {…} | absent, "logs_dir", "data_dir",
     "stack_json", "pid", "stop"}

The My Library link is a one-time link (:func:`node.client.one_time_link`): it
holds a code that opens the demo creator's page with write rights once, within
two minutes; ``empressa node open --data DIR`` prints a fresh one any time.
"""

from __future__ import annotations

import json
import shlex
from pathlib import Path
from typing import IO, Any

LINK_TTL_S = 120  # node.pages.CODE_TTL, said to the reader


def summary(
    info: dict[str, Any],
    *,
    data_dir: Path,
    logs_dir: Path,
    pid: int,
    library_link: str | None,
    demo_dir: Path | None,
) -> dict[str, Any]:
    """The facts of the first screen, from ``stack.json``'s ``info`` and what the supervisor knows."""
    api = info["api_url"]
    doc: dict[str, Any] = {
        "marketplace_url": f"{api}/",
        "api_docs_url": f"{api}/docs",
        "api_url": api,
        "my_library": None,
        "logs_dir": str(logs_dir),
        "data_dir": str(data_dir),
        "stack_json": str(data_dir / "stack.json"),
        "pid": pid,
        "stop": "Ctrl-C, or kill -TERM " + str(pid),
    }
    if demo_dir is not None:
        doc["my_library"] = {
            "link": library_link,
            "expires_in": LINK_TTL_S if library_link else None,
            "data_dir": str(demo_dir),
            "command": f"empressa node open --data {shlex.quote(str(demo_dir))}",
        }
    if "chain" in info:
        doc["chain"] = info["chain"]
    return doc


def text(doc: dict[str, Any]) -> str:
    """The first screen as a person reads it."""
    rows = [
        ("Marketplace", doc["marketplace_url"]),
        ("API docs", doc["api_docs_url"]),
    ]
    lib = doc["my_library"]
    if lib is not None:
        if lib["link"]:
            rows.append(("My Library", f"{lib['link']}"))
            rows.append(("", f"(the demo creator's; opens once, within {lib['expires_in'] // 60} minutes)"))
        else:
            rows.append(("My Library", "the demo creator's node did not answer; try:"))
        rows.append(("", f"a new link any time: {lib['command']}"))
    chain = doc.get("chain")
    if chain:
        rows.append(
            ("Chain", f"{chain['rpc_url']} (chain id {chain['chain_id']}, registry {chain['registry']})")
        )
    rows += [
        ("Logs", doc["logs_dir"]),
        ("Data", f"{doc['data_dir']} ({Path(doc['stack_json']).name} says where everything is)"),
        ("Stop", doc["stop"]),
    ]
    width = max(len(k) for k, _ in rows)
    lines = ["", "Empressa is running.", ""]
    lines += [f"  {k:<{width}}  {v}" for k, v in rows]
    return "\n".join(lines) + "\n"


def emit(doc: dict[str, Any], *, as_json: bool, out: IO[str]) -> None:
    """Write the first screen to ``out`` (stdout): text, or one JSON line with ``as_json``."""
    out.write(json.dumps(doc) + "\n" if as_json else text(doc))
    out.flush()
