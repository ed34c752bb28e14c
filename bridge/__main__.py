"""``python -m bridge [DATA_DIR]``: run the bridge without the CLI (tests, debugging).

Settings come from the environment (``EMPRESSA_BRIDGE_*``, ``DATABASE_URL``) and
``DATA_DIR/config.toml``; ``DATA_DIR`` defaults to ``EMPRESSA_BRIDGE_DATA_DIR``
or ``~/.empressa/bridge``. ``empressa bridge run`` is the supported entry point.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from node.errors import NodeError

from .config import default_data_dir
from .runner import main

if __name__ == "__main__":
    data_dir = Path(sys.argv[1]) if len(sys.argv) > 1 else default_data_dir(os.environ)
    try:
        main(data_dir, {}, os.environ)
    except NodeError as exc:
        print(f"bridge: {exc}", file=sys.stderr)
        raise SystemExit(1) from None
