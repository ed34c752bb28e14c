"""``empressa up``: the whole stack on one machine, under a small supervisor.

Like ``cli.py``, this package may import every other (it starts PostgreSQL, the
indexer's services, the bridge and a demo creator's node); nothing imports it
but ``cli.py`` and its tests.

* :mod:`.supervisor`: :class:`Stack` and :func:`run_stack`, the order of start,
  the supervision and the stop;
* :mod:`.services`: what runs: each service's command line and environment, the
  keystore secret, the demo creator's data dir;
* :mod:`.children`: the process plumbing: :class:`Child`, :class:`Signals`,
  :class:`PidFile` (children die with the supervisor, even when it is SIGKILLed);
* :mod:`.probes`: is a port free, a process alive, the API ready;
* :mod:`.settings`: :class:`StackSettings`, built in ``cli.py`` by
  :func:`load_stack_settings` and passed in;
* :mod:`.errors`: :class:`StackError`.

Errors::

    StackError       up could not start, or will not start here: a stack already runs in the
                     data dir, or its PostgreSQL is in use; a port is taken; a service exited
                     during start-up or was not ready in time; a setting is invalid. One line,
                     naming the service and its log file (or the setting and its source)

What the packages it calls raise passes through as it is, one line each as
well: :class:`node.errors.NodeError` (the demo creator's keystore and store),
:class:`indexer.errors.DatabaseError` (the embedded PostgreSQL, migrations).
Ctrl-C or SIGTERM before the stack is ready raises :class:`KeyboardInterrupt`.

The public names are re-exported here (``from stack import Stack``) but
imported only when first used: ``empressa`` imports :class:`StackError` for
every command, and the supervisor's imports (SQLAlchemy, Alembic, httpx) take
over a second.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .errors import StackError

if TYPE_CHECKING:
    from .children import Child, PidFile, Signals
    from .settings import StackSettings, load_stack_settings
    from .supervisor import Stack, run_stack

__all__ = [
    "Child",
    "PidFile",
    "Signals",
    "Stack",
    "StackError",
    "StackSettings",
    "load_stack_settings",
    "run_stack",
]

_LAZY = {
    "Child": "children",
    "PidFile": "children",
    "Signals": "children",
    "Stack": "supervisor",
    "StackSettings": "settings",
    "load_stack_settings": "settings",
    "run_stack": "supervisor",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)
