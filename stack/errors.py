"""The root error of ``empressa up`` (the tree is drawn in :mod:`stack`'s docstring)."""

from __future__ import annotations

__all__ = ["StackError"]


class StackError(Exception):
    """``empressa up`` could not start, or will not start here.

    ``str(err)`` is one line a user can act on, and ``empressa`` prints it as it
    is (``empressa: <message>``, exit 1). It is raised when:

    - a stack already runs in the data dir (``a stack is already running in DIR (pid N)``),
      or its PostgreSQL is in use by another command;
    - a port the indexer API or the bridge needs is taken (naming ``--port`` or ``--p2p-port``);
    - a service exited during start-up (naming it, its exit status, its last log line and its
      log file), or was not ready in time (naming it and its log file);
    - a setting of ``up`` is invalid (naming it and where its value came from).

    What had been started is stopped before it is raised.
    """
