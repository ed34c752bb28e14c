"""Local writes: this node's own entries, signed and stored with a group commit.

:meth:`Node.publish_many <node.daemon.Node.publish_many>` hands each call's
writes to one local writer task, which takes every call waiting (up to
``MAX_GROUP_WRITES`` writes) and signs and stores them in one transaction, each
call still all or nothing. A small call made while nothing else is committing,
queued or about to run is committed in its caller's own task instead, at once
(the hand-over and back cost as much as the commit). The stored entries go to
the node's ``_stored`` (counted, given to the listeners, and queued for the
announcer, :mod:`node.announcer`), one commit at a time in the order of their
seqs.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import trio

from protocol import Entry, ProtocolError, Signer, check_write

from .errors import StoreError, WritesRejected
from .keystore import Keys
from .replica import Replica
from .store import LocalWrite

MAX_GROUP_WRITES = 5000  # local writes signed and stored in one transaction by the local writer


@dataclass
class _LocalBatch:
    """One call's writes for the local writer, and what became of them."""

    writes: list[LocalWrite]
    entries: list[Entry] = field(default_factory=list)
    error: Exception | None = None
    done: trio.Event = field(default_factory=trio.Event)

    def finish(self, *, entries: list[Entry] | None = None, error: Exception | None = None) -> None:
        if not self.done.is_set():
            self.entries, self.error = entries or [], error
            self.done.set()


def _append_each(
    store: Replica, signer: Signer, batches: list[list[LocalWrite]]
) -> list[list[Entry] | WritesRejected]:
    """:meth:`node.store.Store.append_local_many` for a replica that has only ``append_local``.

    A batch of several is checked whole first (:func:`protocol.check_write`), so a
    bad item stores nothing of its batch; the writes are then appended one by one.
    """
    out: list[list[Entry] | WritesRejected] = []
    for batch in batches:
        bad: list[tuple[int, ProtocolError]] = []
        for i, w in enumerate(batch if len(batch) > 1 else ()):
            try:
                check_write(kind=w.kind, key=w.key, body=w.body)
            except ProtocolError as exc:
                bad.append((i, exc))
        done: list[Entry] = []
        if not bad:
            try:
                for w in batch:
                    done.append(store.append_local(signer, kind=w.kind, key=w.key, body=w.body))
            except ProtocolError as exc:  # a lone write (or the size edge check_write cannot see)
                bad.append((len(done), exc))
        out.append(WritesRejected([(i, str(e)) for i, e in bad], cause=bad[0][1]) if bad else done)
    return out


class LocalWrites:
    """The local writer of :class:`node.daemon.Node` (a mixin: it shares the node's state).

    What it uses of the node: ``keys``, ``store``, ``_nursery``, ``_db_now`` and
    ``_db_inline`` (the store calls that commit small groups in the trio thread),
    ``_stored`` and ``_announce_wakeup``; it owns ``_local_send`` and
    ``_local_committing``.
    """

    keys: Keys
    store: Replica
    _nursery: trio.Nursery | None
    _announce_wakeup: trio.Event
    _local_send: trio.MemorySendChannel[_LocalBatch] | None
    _db_now: Callable[..., Any]
    _db_inline: Callable[..., Any]
    _local_committing: bool
    _stored: Callable[[list[Entry]], None]

    async def publish(
        self, *, kind: str, key: str, body: dict[str, Any], caller_yields: bool = False
    ) -> Entry:
        """Sign, store and announce the next entry of this node's author (``caller_yields``: as for
        :meth:`publish_many`).

        Raises:
            protocol.SchemaError: the fields are invalid (nothing is stored).
            StoreError: the log has a fork, or the store cannot be written.
        """
        try:
            [entry] = await self.publish_many([LocalWrite(kind, key, body)], caller_yields=caller_yields)
        except WritesRejected as exc:
            raise exc.cause or exc from None
        return entry

    async def publish_many(self, writes: Sequence[LocalWrite], *, caller_yields: bool = False) -> list[Entry]:
        """Sign, store and announce ``writes`` as the next entries of this node's author, all or none.

        Calls made while a commit is under way are committed together (a group
        commit): one local writer task takes every call waiting, up to
        ``MAX_GROUP_WRITES`` writes, and signs and stores them in one transaction
        and one worker-thread hop, each call still all or nothing. So N writers
        get more than 1/latency writes per second, and a bulk request costs one
        transaction. A caller that is cancelled while it waits does not withdraw
        its writes: once handed over they are stored and announced.

        Every call is a checkpoint, even one committed at once, so a caller publishing in a loop
        does not starve the announcer and the network; ``caller_yields`` skips that checkpoint for
        a caller that is about to yield anyway (the local API, which sends its response next).

        Raises:
            WritesRejected: some writes are invalid (each bad one's index); none of ``writes`` is stored.
            StoreError: the log has a fork, or the store cannot be written.
        """
        if not writes:
            return []
        pending = _LocalBatch(list(writes))
        if self._nursery is None:  # not running: no writer task to hand it to
            await self._commit_local([pending])
        elif (
            not self._local_committing
            and not trio.lowlevel.current_statistics().tasks_runnable
            and self._commit_now(pending)
        ):
            pass  # committed in this task, at once: nobody else was committing, waiting or about to
        else:
            if self._local_send is None:  # started on first use, in the node's nursery
                self._local_send, receive = trio.open_memory_channel[_LocalBatch](math.inf)
                self._nursery.start_soon(self._local_writer, receive)
            # Unbounded, yet bounded by the callers: each one waits for its own batch below.
            self._local_send.send_nowait(pending)
            self._local_committing = True  # until the writer has nothing left: no commits jump the queue
        if not (caller_yields and pending.done.is_set()):
            await pending.done.wait()  # set already: it returns at the next scheduler pass
        if pending.error is not None:
            raise pending.error
        return pending.entries

    def _commit_now(self, pending: _LocalBatch) -> bool:
        """Commit ``pending`` in the caller's own task when that needs no wait: a small batch, the
        store free at once (:meth:`node.store.Store.try_now`). It skips the hand-over to the local
        writer and back (two task switches, a sizeable share of a lone write's cost). False, and
        nothing done, when the batch must go to the writer.

        Only called while no group commit is under way (``_local_committing``) and no other task
        is about to run (``tasks_runnable``: with other writers' requests arriving in the same
        scheduler pass, the batch goes to the writer, which commits them all in one transaction).
        It never yields, so commits still happen, and reach ``_stored``, one at a time in the
        order of their seqs."""
        many = getattr(self.store, "append_local_many", None)
        if many is None:
            return False
        try:
            outcomes = self._db_inline(len(pending.writes), many, self.keys.author, [pending.writes])
        except Exception:  # busy, or a store error: the writer makes the same call and handles it
            return False
        self._finished([pending], outcomes)
        return True

    async def _local_writer(self, receive: trio.MemoryReceiveChannel[_LocalBatch]) -> None:
        async for first in receive:
            group, size = [first], len(first.writes)
            while size < MAX_GROUP_WRITES:
                try:
                    more = receive.receive_nowait()
                except trio.WouldBlock:
                    break
                group.append(more)
                size += len(more.writes)
            self._local_committing = True
            try:
                await self._commit_local(group)
            finally:
                self._local_committing = receive.statistics().current_buffer_used > 0

    async def _commit_local(self, group: list[_LocalBatch]) -> None:
        """One transaction for ``group`` (:meth:`node.store.Store.append_local_many`); every caller told."""
        # The creator's SQLite store commits the group in one transaction; another replica (the
        # bridge's PostgreSQL store, which publishes little) one write at a time.
        many = getattr(self.store, "append_local_many", None) or partial(_append_each, self.store)
        try:
            outcomes = await self._db_now(
                sum(len(p.writes) for p in group), many, self.keys.author, [p.writes for p in group]
            )
        except BaseException as exc:
            for p in group:
                p.finish(error=exc if isinstance(exc, Exception) else StoreError("the node is stopping"))
            raise
        self._finished(group, outcomes)

    def _finished(self, group: list[_LocalBatch], outcomes: list[list[Entry] | WritesRejected]) -> None:
        """Tell every caller of ``group`` what became of its batch; hand the stored entries on."""
        stored: list[Entry] = []
        for p, outcome in zip(group, outcomes, strict=True):
            if isinstance(outcome, WritesRejected):
                p.finish(error=outcome)
            else:
                stored += outcome
                p.finish(entries=outcome)
        if stored:
            self._stored(stored)
            self._announce_wakeup.set()
