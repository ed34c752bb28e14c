"""What /readyz makes of the figures the reconciler records (chain_cursors.data), on a real database:
errors fail it, a short outage does not, silence does; and the processed blocks kept stay bounded."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from indexer.api.chains import chain_readiness, stale_after
from indexer.store import Store
from tests.indexer.apiclient import settings_for

EVM = {"evm_rpc_url": "http://127.0.0.1:9", "evm_registry": "0x" + "11" * 20, "reconcile_interval": 1.0}


def test_readiness_from_recorded_status(store: Store, tmp_path: Path) -> None:
    settings = settings_for(tmp_path, **EVM)
    now = time.time()
    limit = stale_after(settings)
    assert chain_readiness(store, settings_for(tmp_path), started=0)[0] is None  # no chain: ready
    assert chain_readiness(store, settings, started=now)[0] is None  # just started: it has time
    why = chain_readiness(store, settings, started=now - limit - 1)[0]
    assert why is not None and why.startswith("no chain source has reported")

    def record(**data: Any) -> str | None:
        store.chain.record_status("eip155:1", {"updated_at": time.time(), **data})
        return chain_readiness(store, settings, started=0)[0]

    assert record(error=None, state="ok", ok_at=time.time()) is None
    assert record(error="chain-unavailable: timed out", state="unavailable") is None  # ok_at 0 s ago
    store.chain.record_status("eip155:1", {"ok_at": time.time() - limit - 1})
    assert "timed out" in (record(error="chain-unavailable: timed out", state="unavailable") or "")
    assert "wrong" in (record(error="chain-config: wrong", state="config-error") or "")
    assert record(error=None, state="ok", ok_at=time.time()) is None
    store.chain.record_status("eip155:1", {"updated_at": time.time() - limit - 5})
    why = chain_readiness(store, settings, started=0)[0]
    assert why is not None and "has not reported" in why
    # A status row never looks like a processed cursor.
    cursor = store.chain.cursor("eip155:1")
    assert cursor is not None and cursor.block_hash is None
