"""Marketplace search: a Tantivy index derived from PostgreSQL's ``assets``.

* :mod:`.index`: the design (module docstring), :class:`SearchIndex` (open
  with :func:`open_index`): searching, pinned searchers, facets, writing;
* :mod:`.schema`: analyzer, schema, documents, sort keys, Tantivy's errors translated;
* :mod:`.query`: :class:`SearchQuery`, validation, query building, cursors;
* :mod:`.feeder`: :class:`Feeder` follows ``assets.change_seq`` into the
  index; :func:`reindex` rebuilds it from scratch.

::

    index = open_index(path, writer=False)          # the API process
    index.refresh()                                 # cheap, before each search
    page = index.search(SearchQuery(q="cafe", tags=["jazz"], limit=20))

    feeder = Feeder(store, open_for_feeding(store, path))    # the feeder process
    feeder.run(stop_event)

Errors (defined in :mod:`indexer.errors`, re-exported here):
:class:`~indexer.errors.BadRequest` (bad parameters or cursor),
:class:`NoSearchTerms` (400, a non-blank ``q`` that holds no searchable term),
:class:`CursorExpired` (410, a relevance cursor past its keep-alive),
:class:`SearchUnavailable` (503, the index cannot be opened or read).
"""

from ..errors import CursorExpired, NoSearchTerms, SearchUnavailable
from .feeder import Feeder, open_for_feeding, reindex
from .index import SearchIndex, SearchPage, SearchQuery, open_index

__all__ = [
    "CursorExpired",
    "Feeder",
    "NoSearchTerms",
    "SearchIndex",
    "SearchPage",
    "SearchQuery",
    "SearchUnavailable",
    "open_for_feeding",
    "open_index",
    "reindex",
]
