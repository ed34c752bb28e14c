"""The names of the files in a node's or a bridge's data directory, in one place.

::

    DATA_DIR/
    ├── config.toml     settings ([node] or [bridge] table)         CONFIG_FILE
    ├── keystore.json   the sealed author and peer keys             KEYSTORE_FILE
    ├── node.db         the node's SQLite store (WAL)               NODE_DB
    ├── media.db        files published as media, and their pins    MEDIA_DB
    ├── node.json       a running node daemon's did, addrs, API     NODE_JSON
    ├── api.token       that daemon's local API bearer token (0600)  API_TOKEN
    └── bridge.json     a running bridge's did, peer id, addrs      BRIDGE_JSON

Every module that opens one of these takes its name from here, so the layout on
disk is written down once (tests keep the literal names: they check the layout).
"""

from __future__ import annotations

__all__ = ["API_TOKEN", "BRIDGE_JSON", "CONFIG_FILE", "KEYSTORE_FILE", "MEDIA_DB", "NODE_DB", "NODE_JSON"]

CONFIG_FILE = "config.toml"
KEYSTORE_FILE = "keystore.json"
NODE_DB = "node.db"
MEDIA_DB = "media.db"
NODE_JSON = "node.json"
API_TOKEN = "api.token"
BRIDGE_JSON = "bridge.json"
