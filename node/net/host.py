"""The libp2p host shared by the node and the bridge: the only place py-libp2p is used.

It builds a host with TCP, Noise and Yamux, runs gossipsub on the entries
topic, and exposes a small surface to the rest of the code:

* :meth:`P2P.publish` / :attr:`P2P.gossip` for the gossip topics (each message
  tagged with its topic), :meth:`P2P.topic_peers` for who subscribes to one;
* :meth:`P2P.open` / :meth:`P2P.handle` for request/response streams, wrapped
  as :class:`FrameStream` (frames of :mod:`protocol.wire`; a stream may carry
  many requests, :attr:`FrameStream.reusable`);
* :attr:`P2P.connections` for peers that connect or disconnect;
* :meth:`P2P.connect` / :meth:`P2P.disconnect` / :meth:`P2P.peers`.

libp2p's stream errors are translated here into :class:`node.errors.PeerError`
(:class:`~node.errors.PeerUnavailable` when a dial or a stream cannot be opened).
Notes measured on libp2p 0.8.1 that shape this file: ``stream.read()`` raises
``StreamEOF`` when the peer closes (it never returns ``b""``), and a handler
that lets it escape wedges the connection, so every handler is wrapped; gossip
``publish()`` does not wait for the network and drops silently when a peer's
32-slot queue is full, so callers pace it and rely on sync for completeness.

Yamux flow control, read and measured on libp2p 0.8.1
(``stream_muxer/yamux/yamux.py``, ``YamuxStream._auto_tune_and_send_window_update``):
every ``read()`` that consumes bytes may end in a WINDOW_UPDATE frame (one
Noise-encrypted write on the connection); the initial window (256 KiB,
``DEFAULT_WINDOW_SIZE``) is a module constant with no setting. The only knobs
are ``PY_YAMUX_*`` environment variables read at call time. In the in-process
benchmark (publish loop, 3,000 entries), ``PY_YAMUX_RELEASE_ON_READ=0`` cut
window updates from about 1.1 to 0.2 per gossip message, but CPU per entry
moved within the noise of a shared machine; it is not set here: it is
process-wide, and a sender whose window runs out then waits on libp2p's 10 ms
poll. The cost is cut by reading less often instead: gossip v2 carries many
entries per message, an inbound pubsub stream is read ahead
(:class:`_ReadAhead`: pubsub asks for a message in three ``read()`` calls, two
varint bytes and the body, which now cost one yamux read and one window update
instead of three; in process, publish to the peer's store went from 5.7 to 4.9
ms on a slow machine), and the update that read owes is sent 2 ms later by a
task of its own, after pubsub and the node have the message (at once when 64
KiB is owed; the stream's ``send_window_update`` is replaced on that one
stream object; the window is counted by yamux as before, and updates owed
meanwhile go as one), and sync reads in
256 KiB chunks (:data:`READ_CHUNK`) on streams reused for many requests (a new
stream costs a SYN, a multistream-select round trip and their window updates).
Per 1,000 entries replicated live: about 940 window updates and 16 new streams
before, 140 and none after (same run, same machine).

Our own gossip, read on libp2p 0.8.1 (``Pubsub.publish``): after signing, pubsub
runs its own message through ``push_msg``, the checks for a message from a
peer: the signature verified again, the topic validators, delivery to our own
subscription (which the node then drops as its own). :meth:`P2P.publish` builds
and signs the message exactly as ``Pubsub.publish`` does (Ed25519 is
deterministic: the same bytes), marks it seen and hands it to the router; it
takes libp2p's own path whenever a topic validator is registered or strict
signing is off. Inbound gossip reaches :attr:`P2P.gossip` straight from
pubsub's ``notify_subscriptions`` (:class:`_Deliver`), not through a
subscription channel and a task that copies from it. In process, on a slow
machine, a gossip message from the sender's write to the receiver's store
went from 3.3–3.9 ms to 2.6 ms with these and the deferred window update.

Listen sockets, measured on libp2p 0.8.1 (Linux): its TCP listener
(``libp2p/transport/tcp/tcp.py``, ``_open_reuseport_listeners`` calling
``_set_reuse_flags``) sets ``SO_REUSEPORT`` on every listen socket, for DCUtR
hole punching. The kernel then lets any process of the same user bind and
listen on that port too and splits new connections between them: a second
``empressa node run --listen`` on a bridge's port started without an error and
took part of the bridge's peers. Hole punching is not used here, so this
module replaces ``_set_reuse_flags`` with one that sets only ``SO_REUSEADDR``
(a restart still binds past TIME_WAIT); a second bind of the port now fails
with EADDRINUSE (libp2p's hole-punch dial falls back to an ephemeral source
port, as it does where the flag is unavailable). :meth:`P2P.run` checks the
listen sockets it got for the flag, so a libp2p upgrade cannot quietly undo this.

libp2p also does not fail when it cannot listen: ``Swarm.listen`` logs the
failure at debug level (or "no transport … Skipping." for a non-TCP address)
and the host runs listening nowhere. :meth:`P2P.run` therefore binds each
address itself first (same flags) to get the OS's reason, checks afterwards
that every address has a listener, and raises :class:`~node.errors.ListenError`
otherwise. Only ``/ip4|ip6/<address>/tcp/<port>`` is accepted
(:func:`node.config.listen_endpoint`).

Signed peer records on every pubsub RPC, measured on libp2p 0.8.1
(``libp2p/peer/peerstore.py`` ``env_to_send_in_RPC``, ``libp2p/pubsub/utils.py``
``maybe_consume_signed_record``): pubsub attaches the host's signed peer record
to every RPC it sends, and checks the one on every RPC it receives. Building
it lists and re-parses the host's addresses each time (about 220 µs); checking
it parses the envelope, verifies its Ed25519 signature and rewrites the
peerstore entry (about 380 µs). For one gossip message between two nodes that
was about 0.8 ms of CPU (the receiver builds one too, to forward), several
times the cost of the entry it carries. This module keeps both for
:data:`SIGNED_RECORD_TTL`: the record sent is rebuilt when it is older than
that, and a record received is checked in full unless it is byte for byte the
one this host last accepted from the same peer within that time (the same
bytes verify the same way; a changed or forged record is always checked, and
a refused one is never remembered). The replacements are installed into the
pubsub modules that imported the two functions, checked at import like the
listen-socket one.

A new service task's parent, read on libp2p 0.8.1
(``tools/anyio_service/trio_manager.py``, ``TrioManager._find_parent_task``):
every ``run_task`` walks the manager's whole task tree to find the task that
called it. Pubsub runs one long-lived task per peer (its sending queue) and
spawns one per gossip message it receives, from the stream's handler, which is
not in its tree, so each message walked them all: measured with
``bench/service_tasks.py``, 0.66–1.3 ms a message with 1,000 tasks in the tree (a
bridge with 1,000 peers), 17 µs with this module's index. The index maps each
running trio task to the ``FunctionTask`` it runs (``FunctionTask.run`` is
wrapped to add and remove it); the parent is that task if its chain of parents
ends in one of this manager's root tasks, else none, which is what the walk
found. Installed at import and checked there, like the others.

mDNS announces the host's addresses on every interface; a host whose listen
addresses are all loopback has nothing to offer the LAN, so it is built
without mDNS (:func:`announces_on_lan`) and says so in the log.
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import socket
import time
import weakref
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import multiaddr
import trio
from libp2p import new_host
from libp2p.abc import INetConn, INetStream, INetwork, INotifee
from libp2p.crypto.ed25519 import create_new_key_pair
from libp2p.crypto.x25519 import create_new_key_pair as create_x25519_key_pair
from libp2p.custom_types import TProtocol
from libp2p.discovery.events.peerDiscovery import peerDiscovery
from libp2p.network.stream.exceptions import StreamError, StreamReset
from libp2p.peer.id import ID
from libp2p.peer.peerinfo import PeerInfo, info_from_p2p_addr
from libp2p.pubsub import gossipsub as _libp2p_gossipsub
from libp2p.pubsub import pubsub as _libp2p_pubsub
from libp2p.pubsub.gossipsub import GossipSub
from libp2p.pubsub.pubsub import Pubsub
from libp2p.security.noise.transport import PROTOCOL_ID as NOISE_PROTOCOL_ID
from libp2p.security.noise.transport import Transport as NoiseTransport
from libp2p.tools.anyio_service import background_trio_service
from libp2p.tools.anyio_service import trio_manager as _trio_manager
from libp2p.tools.anyio_service import trio_tasks as _trio_tasks
from libp2p.transport.tcp import tcp as _libp2p_tcp

from protocol import wire

from ..config import listen_endpoint
from ..errors import ListenError, PeerClosed, PeerError, PeerUnavailable
from ..logctx import correlation_id, new_id

log = logging.getLogger(__name__)


def _reuse_address_only(sock: trio.socket.SocketType | socket.socket) -> None:
    """libp2p's ``_set_reuse_flags`` without ``SO_REUSEPORT`` (see the module docstring)."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)


if not hasattr(_libp2p_tcp, "_set_reuse_flags"):  # the pinned libp2p has it; a new one must be re-checked
    raise ImportError(
        "libp2p.transport.tcp.tcp._set_reuse_flags is gone: re-check how listen sockets are made"
    )
_libp2p_tcp._set_reuse_flags = _reuse_address_only

SIGNED_RECORD_TTL = (
    10.0  # seconds a signed peer record, sent or accepted, is reused (see the module docstring)
)
_build_record = _libp2p_pubsub.env_to_send_in_RPC
_check_record = _libp2p_pubsub.maybe_consume_signed_record
_sent_records: weakref.WeakKeyDictionary[object, tuple[float, bytes]] = weakref.WeakKeyDictionary()
_accepted_records: weakref.WeakKeyDictionary[object, dict[object, tuple[float, bytes]]] = (
    weakref.WeakKeyDictionary()
)


def _record_to_send(host: object) -> tuple[bytes, bool]:
    """``env_to_send_in_RPC``, rebuilt at most every ``SIGNED_RECORD_TTL``."""
    now = time.monotonic()
    cached = _sent_records.get(host)
    if cached is not None and now - cached[0] < SIGNED_RECORD_TTL:
        return cached[1], False
    envelope, created = _build_record(host)
    _sent_records[host] = (now, envelope)
    return envelope, created


def _consume_record(msg: object, host: object, peer_id: object) -> bool:
    """``maybe_consume_signed_record``, skipped for the very record last accepted from ``peer_id``."""
    record: bytes = msg.senderRecord if msg.HasField("senderRecord") else b""  # type: ignore[attr-defined]
    if not record:
        return True
    now = time.monotonic()
    seen = _accepted_records.setdefault(host, {})
    last = seen.get(peer_id)
    if last is not None and last[1] == record and now - last[0] < SIGNED_RECORD_TTL:
        return True
    ok: bool = _check_record(msg, host, peer_id)
    if ok:
        seen[peer_id] = (now, record)
    else:
        seen.pop(peer_id, None)
    return ok


for _module in (
    _libp2p_pubsub,
    _libp2p_gossipsub,
):  # the pinned libp2p has both; a new one must be re-checked
    if (
        _module.env_to_send_in_RPC is not _build_record
        or _module.maybe_consume_signed_record is not _check_record
    ):
        raise ImportError(f"{_module.__name__}: re-check how pubsub builds and checks signed peer records")
    _module.env_to_send_in_RPC = _record_to_send  # type: ignore[assignment]
    _module.maybe_consume_signed_record = _consume_record  # type: ignore[assignment]

_SIGNING_PREFIX = _libp2p_pubsub.PUBSUB_SIGNING_PREFIX.encode()
_rpc_pb2 = _libp2p_pubsub.rpc_pb2
for _name in ("_next_seqno", "_is_msg_seen", "_mark_msg_seen", "push_msg"):  # what P2P.publish relies on
    if not callable(getattr(Pubsub, _name, None)):
        raise ImportError(f"libp2p Pubsub.{_name} is gone: re-check P2P.publish against Pubsub.publish")

# A service task's parent in O(1) (see the module docstring): the FunctionTask each running trio task runs.
_running: dict[trio.lowlevel.Task, _trio_tasks.FunctionTask] = {}
_function_task_run = _trio_tasks.FunctionTask.run
LIBP2P_FIND_PARENT_TASK = _trio_manager.TrioManager._find_parent_task  # the walk (bench/service_tasks.py)


async def _run_indexed(self: _trio_tasks.FunctionTask) -> None:
    """``FunctionTask.run``, with the trio task that runs it known while it does."""
    me = trio.lowlevel.current_task()
    _running[me] = self
    try:
        await _function_task_run(self)
    finally:
        _running.pop(me, None)


def _find_parent_task(self: _trio_manager.TrioManager, trio_task: trio.lowlevel.Task) -> Any:
    """``TrioManager._find_parent_task`` without the walk of the whole task tree: the FunctionTask
    ``trio_task`` runs, if it is in this manager's tree (its chain of parents ends in a root task)."""
    task = _running.get(trio_task)
    if task is None:
        return None
    root: Any = task
    while root.parent is not None:
        root = root.parent
    return task if root in self._root_tasks else None


if not (  # the pinned libp2p has these; a new one must be re-checked
    callable(getattr(_trio_manager.TrioManager, "_find_parent_task", None))
    and "_root_tasks" in _trio_manager.TrioManager.__init__.__code__.co_names
    and _trio_manager.FunctionTask is _trio_tasks.FunctionTask
):
    raise ImportError("libp2p's TrioManager changed: re-check how a new task's parent is found")
_trio_tasks.FunctionTask.run = _run_indexed  # type: ignore[method-assign]
_trio_manager.TrioManager._find_parent_task = _find_parent_task  # type: ignore[method-assign]

GOSSIP_PROTOCOLS = [TProtocol("/meshsub/1.1.0"), TProtocol("/meshsub/1.0.0")]
READ_CHUNK = 256 * 1024
# How long an inbound pubsub stream's window update waits after its read (see _ReadAhead.send_updates).
WINDOW_UPDATE_DELAY = 0.002
# ... unless this much is owed: then at once (a burst of large batches must not wait on its window).
WINDOW_UPDATE_AT_ONCE = 64 * 1024


class _ReadAhead:
    """An inbound pubsub stream whose small reads are served from one read of what has arrived.

    Pubsub reads each RPC as a varint, a byte at a time, then its body: three
    ``read()`` calls for a gossip message, and each one of yamux's that consumes
    bytes may answer with a WINDOW_UPDATE (see the module docstring). Traced in
    process on libp2p 0.8.1 (two nodes, one write every 50 ms): three window
    updates a message, and the message reached the receiver's pubsub 3.5 ms
    after the sender wrote it. Here a read on an empty buffer takes whatever
    has arrived (at most ``chunk`` bytes) and the varint and the body are served
    from it: one yamux read and one update a message. The buffer holds at most
    one chunk (a read is made only when it is empty); everything else is the
    stream's.
    """

    def __init__(self, stream: INetStream, chunk: int = 64 * 1024) -> None:
        self._stream = stream
        self._chunk = chunk
        self._buf = bytearray()
        self._owed = 0
        self._owing = trio.Event()
        self._urgent = trio.Event()
        muxed = getattr(stream, "muxed_stream", None)
        self._send_update: Callable[[int], Awaitable[None]] | None = getattr(
            muxed, "send_window_update", None
        )
        if self._send_update is not None:  # yamux: its reads call this on the stream itself
            muxed.send_window_update = self._defer_update  # type: ignore[union-attr]

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)

    async def _defer_update(self, increment: int, skip_lock: bool = False) -> None:
        """What a yamux read would send before returning: owed, and sent by :meth:`send_updates`."""
        if increment > 0:
            self._owed += increment
            self._owing.set()
            if self._owed >= WINDOW_UPDATE_AT_ONCE:
                self._urgent.set()

    async def send_updates(self) -> None:
        """Send the window updates reads owe, ``WINDOW_UPDATE_DELAY`` after the read; several owed go as one.

        Runs beside pubsub's handler for as long as the stream is read. A yamux
        read sends its WINDOW_UPDATE (an encrypted write) before it returns the
        data, so the message waited on it; sent at once from here, it still ran
        ahead of the message's verification and store write (the next turn of
        the scheduler). The window is credited as before (yamux has already
        counted it), only the frame that says so leaves 2 ms later, or at once
        when ``WINDOW_UPDATE_AT_ONCE`` is owed (a quarter of yamux's 256 KiB
        window: a burst of large batches never waits on its window for us).
        """
        if self._send_update is None:
            return
        while True:
            await self._owing.wait()
            with trio.move_on_after(WINDOW_UPDATE_DELAY):
                await self._urgent.wait()
            self._owing, self._urgent = trio.Event(), trio.Event()
            owed, self._owed = self._owed, 0
            await self._send_update(owed)

    async def read(self, n: int | None = None) -> bytes:
        if n is None or n < 0:  # the rest: what is buffered, else what the stream has
            if self._buf:
                out = bytes(self._buf)
                self._buf.clear()
                return out
            return await self._stream.read(n)
        if not self._buf:
            self._buf += await self._stream.read(max(n, self._chunk))
        out = bytes(self._buf[:n])
        del self._buf[:n]
        return out


class _Deliver:
    """Where pubsub puts a message of one subscribed topic: straight into :attr:`P2P.gossip`.

    Stands in for the subscription's send channel (``notify_subscriptions``
    calls ``send_nowait``; ``unsubscribe`` calls ``aclose``).
    """

    def __init__(self, send: trio.MemorySendChannel[GossipMessage], topic: str) -> None:
        self._send = send
        self._topic = topic
        self._names: dict[bytes, str] = {}  # peer ids seen as origins, base58 (encoding one costs ~40 µs)

    def send_nowait(self, msg: Any) -> None:
        origin = self._names.get(msg.from_id)
        if origin is None:
            try:
                origin = str(ID(msg.from_id))
            except Exception:
                origin = ""
            if len(self._names) >= 4096:
                self._names.clear()
            self._names[msg.from_id] = origin
        try:
            self._send.send_nowait(GossipMessage(bytes(msg.data), origin, self._topic))
        except trio.WouldBlock:
            # Consumer is behind: drop, exactly like the network may. Sync repairs it.
            log.warning("gossip inbox full; dropping a message (sync will repair)")

    async def aclose(self) -> None:
        pass  # the channel is P2P's, shared by every topic


@dataclass(frozen=True)
class GossipMessage:
    data: bytes
    origin: str  # peer id of the publisher
    topic: str = wire.GOSSIP_TOPIC


class FrameStream:
    """A libp2p stream carrying length-prefixed :mod:`protocol.wire` frames."""

    def __init__(self, stream: INetStream, peer: str, *, many: bool = True) -> None:
        self._stream = stream
        self._many = many  # the negotiated protocol lets a stream carry more than one request
        self._decoder = wire.FrameDecoder()
        self._ready: list[wire.Frame] = []
        self.peer = peer

    async def send(self, *frames: wire.Frame) -> None:
        """Write frames in one stream write (a write costs ~230 µs whatever its size)."""
        data = b"".join(wire.encode_frame(f) for f in frames)
        try:
            await self._stream.write(data)
        except StreamError as exc:
            raise PeerError(f"peer {self.peer} stream closed while writing: {exc}") from None

    async def recv(self) -> wire.Frame:
        """The next frame.

        Raises:
            PeerClosed: the peer closed the stream cleanly between frames.
            PeerError: a reset, an EOF inside a frame, or a malformed frame.
        """
        while not self._ready:
            try:
                chunk = await self._stream.read(READ_CHUNK)
            except StreamReset:
                raise PeerError(f"peer {self.peer} reset the stream") from None
            except StreamError:
                chunk = b""
            if not chunk:
                if self._decoder.pending:
                    raise PeerError(f"peer {self.peer} closed the stream mid-frame")
                raise PeerClosed(f"peer {self.peer} closed the stream")
            try:
                self._ready.extend(self._decoder.feed(chunk))
            except Exception as exc:  # FrameError, but never let a peer crash us
                raise PeerError(f"peer {self.peer} sent a bad frame: {exc}") from None
        return self._ready.pop(0)

    @property
    def reusable(self) -> bool:
        """Whether another request may be sent: the peer has neither closed nor reset its side."""
        muxed = getattr(self._stream, "muxed_stream", None)
        return self._many and not (
            self._ready
            or self._decoder.pending
            or getattr(muxed, "recv_closed", True)
            or getattr(muxed, "reset_received", True)
        )

    async def close(self) -> None:
        try:
            await self._stream.close()
        except Exception:
            log.debug("stream close failed peer=%s", self.peer)

    async def reset(self) -> None:
        try:
            await self._stream.reset()
        except Exception:
            log.debug("stream reset failed peer=%s", self.peer)


class _Notifee(INotifee):
    def __init__(self, send: trio.MemorySendChannel[tuple[str, bool]]) -> None:
        self._send = send

    async def opened_stream(self, network: INetwork, stream: INetStream) -> None:
        pass

    async def closed_stream(self, network: INetwork, stream: INetStream) -> None:
        pass

    async def connected(self, network: INetwork, conn: INetConn) -> None:
        self._notify(str(conn.muxed_conn.peer_id), True)

    async def disconnected(self, network: INetwork, conn: INetConn) -> None:
        self._notify(str(conn.muxed_conn.peer_id), False)

    async def listen(self, network: INetwork, multiaddr: multiaddr.Multiaddr) -> None:
        pass

    async def listen_close(self, network: INetwork, multiaddr: multiaddr.Multiaddr) -> None:
        pass

    def _notify(self, peer: str, up: bool) -> None:
        try:
            self._send.send_nowait((peer, up))
        except (trio.WouldBlock, trio.ClosedResourceError):
            log.debug("connection event dropped peer=%s up=%s", peer, up)


def announces_on_lan(listen: list[str]) -> bool:
    """True when some listen address is reachable beyond this machine (not loopback)."""
    return any(not ipaddress.ip_address(listen_endpoint(a)[0]).is_loopback for a in listen)


def check_listen(listen: Sequence[str]) -> None:
    """Bind each listen address as libp2p will (then let go), so a refusal is reported with the OS's reason.

    :meth:`P2P.run` calls it first; a process may call it earlier, before slower
    start-up work (the bridge: before its database and keystore).

    Raises:
        ListenError: an address is not TCP, in use, not an address of this machine, not permitted, …
    """
    for text in listen:
        try:
            ip, port = listen_endpoint(text)
        except ValueError as exc:
            raise ListenError(str(exc)) from None
        family = socket.AF_INET6 if ":" in ip else socket.AF_INET
        try:
            with socket.socket(family, socket.SOCK_STREAM) as probe:
                _reuse_address_only(probe)
                probe.bind((ip, port))
        except OSError as exc:
            raise ListenError(f"cannot listen on {text}: {exc.strerror or exc}") from None


class P2P:
    """A running libp2p host with gossipsub. Use as ``await nursery.start(p2p.run)``."""

    def __init__(
        self,
        *,
        peer_seed: bytes,
        listen: list[str],
        mdns: bool = False,
        gossip_max_per_second: float = 1000.0,
        topics: Sequence[str] = (wire.GOSSIP_TOPIC, wire.GOSSIP_TOPIC_V2),
    ) -> None:
        for a in listen:
            try:
                listen_endpoint(a)
            except ValueError as exc:
                raise ListenError(str(exc)) from None
        self._mdns_skipped = mdns and not announces_on_lan(listen)  # logged once listening
        mdns = mdns and not self._mdns_skipped
        self._key_pair = create_new_key_pair(peer_seed)
        self._listen = [multiaddr.Multiaddr(a) for a in listen]
        sec = {
            NOISE_PROTOCOL_ID: NoiseTransport(
                self._key_pair, noise_privkey=create_x25519_key_pair().private_key
            )
        }
        self._mdns = mdns
        self._host = new_host(key_pair=self._key_pair, sec_opt=sec, enable_mDNS=mdns)
        self._gossipsub = GossipSub(
            protocols=GOSSIP_PROTOCOLS,
            degree=6,
            degree_low=4,
            degree_high=12,
            heartbeat_interval=1,
            # All test peers share 127.0.0.1; IP-diversity checks would starve the mesh.
            eclipse_protection_enabled=False,
            max_messages_per_topic_per_second=gossip_max_per_second,
        )
        self._pubsub = Pubsub(self._host, self._gossipsub, msg_id_constructor=_content_id)
        for protocol in GOSSIP_PROTOCOLS:
            # Over the handler Pubsub registered: see _guarded_pubsub_stream.
            self._host.set_stream_handler(protocol, self._guarded_pubsub_stream)
        self._gossip_send, self.gossip = trio.open_memory_channel[GossipMessage](4096)
        self._conn_send, self.connections = trio.open_memory_channel[tuple[str, bool]](1024)
        self._host.get_network().register_notifee(_Notifee(self._conn_send))
        self.peer_id = str(self._host.get_id())
        self._my_id = self._host.get_id().to_bytes()
        self._my_key = self._host.get_public_key().serialize()
        self.topics = tuple(topics)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Listen, join gossip, serve; raises :class:`ListenError` before starting if an address cannot be bound."""
        check_listen([str(a) for a in self._listen])
        async with self._host.run(listen_addrs=self._listen):
            self._check_listeners()
            if self._mdns_skipped:
                log.info(
                    "mDNS skipped: every listen address is loopback, nothing to announce on the LAN listen=%s",
                    ",".join(map(str, self._listen)),
                )
            await self._serve(task_status)

    def _check_listeners(self) -> None:
        """Every listen address has a socket, and none of them shares its port (``SO_REUSEPORT``)."""
        listeners = self._host.get_network().listeners
        for addr in self._listen:
            sockets = [s.socket for s in getattr(listeners.get(str(addr)), "listeners", [])]
            if not sockets:
                raise ListenError(f"cannot listen on {addr}: libp2p opened no socket there")
            for sock in sockets:
                if sock.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT):
                    raise ListenError(
                        f"listening on {addr} would let other processes share its port (SO_REUSEPORT)"
                    )

    async def _serve(self, task_status: trio.TaskStatus[None]) -> None:
        async with (
            background_trio_service(self._pubsub),
            background_trio_service(self._gossipsub),
            trio.open_nursery() as nursery,
        ):
            await self._pubsub.wait_until_ready()
            for topic in self.topics:
                await self._pubsub.subscribe(topic)
                # Pubsub hands each message to the subscription with send_nowait: deliver
                # it from there to ``gossip`` (one channel hop, not two and a task).
                self._pubsub.subscribed_topics_send[topic].close()
                self._pubsub.subscribed_topics_send[topic] = _Deliver(self._gossip_send, topic)  # type: ignore[assignment]
            if self._mdns:
                nursery.start_soon(self._dial_discovered)
            task_status.started()
            try:
                await trio.sleep_forever()
            finally:
                # Cancelling the services leaves the listener and connections open
                # (peers would keep a dead link); close them. Call close() before
                # cancelling to close every connection, not just most of them.
                with trio.CancelScope(shield=True):
                    await self.close()

    async def close(self) -> None:
        """Close the listeners and every connection (idempotent, bounded to a few seconds)."""
        with trio.move_on_after(5):
            try:
                await self._host.close()
            except Exception as exc:
                log.debug("host close failed err=%s", exc)

    async def _dial_discovered(self) -> None:
        """Connect to peers found by mDNS (the callback runs on zeroconf's thread)."""
        token = trio.lowlevel.current_trio_token()
        send, receive = trio.open_memory_channel[PeerInfo](64)

        def on_found(info: PeerInfo) -> None:
            def deliver() -> None:
                with contextlib.suppress(trio.WouldBlock, trio.ClosedResourceError):
                    send.send_nowait(info)

            with contextlib.suppress(trio.RunFinishedError):
                token.run_sync_soon(deliver)

        peerDiscovery.register_peer_discovered_handler(on_found)
        try:
            async for info in receive:
                if info.peer_id == self._host.get_id() or info.peer_id in self._host.get_connected_peers():
                    continue
                try:
                    with trio.move_on_after(10):
                        await self._host.connect(info)
                    log.info("connected to LAN peer found by mDNS peer=%s", info.peer_id)
                except Exception as exc:
                    log.info("mDNS peer dial failed peer=%s err=%s", info.peer_id, exc)
        finally:
            peerDiscovery.unregister_peer_discovered_handler(on_found)

    @property
    def mdns(self) -> bool:
        """Whether the host runs mDNS (asked for, and some listen address is not loopback)."""
        return self._mdns

    def addrs(self) -> list[str]:
        """Dialable addresses; a wildcard listen address is reported as loopback."""
        out = []
        for a in self._host.get_addrs():
            text = str(a).replace("/ip4/0.0.0.0/", "/ip4/127.0.0.1/")
            if text not in out:
                out.append(text)
        return out

    def peers(self) -> list[str]:
        return [str(p) for p in self._host.get_connected_peers()]

    async def connect(self, addr: str) -> str:
        """Dial a ``/…/p2p/<peer id>`` multiaddr; returns the peer id."""
        try:
            info = info_from_p2p_addr(multiaddr.Multiaddr(addr))
        except Exception as exc:
            raise PeerError(f"bad peer address {addr!r}: {exc}") from None
        try:
            await self._host.connect(info)
        except Exception as exc:
            raise PeerUnavailable(f"cannot connect to {addr}: {exc}") from None
        return str(info.peer_id)

    async def disconnect(self, peer: str) -> None:
        try:
            await self._host.disconnect(ID.from_base58(peer))
        except Exception as exc:
            log.debug("disconnect failed peer=%s err=%s", peer, exc)

    async def publish(self, data: bytes, topic: str = wire.GOSSIP_TOPIC) -> None:
        """Publish ``data`` on ``topic`` (default: v1, one raw entry).

        The message is built and signed as ``Pubsub.publish`` does, then marked
        seen and handed to the router; pubsub's ``push_msg`` (what it runs for a
        message from a peer) is skipped for our own (see the module docstring).
        """
        ps = self._pubsub
        if ps.topic_validators or not ps.strict_signing or ps.sign_key is None:
            await ps.publish(topic, data)  # not how this module sets pubsub up: libp2p's own path
            return
        msg = _rpc_pb2.Message(data=data, topicIDs=[topic], from_id=self._my_id, seqno=ps._next_seqno())
        signature = ps.sign_key.sign(_SIGNING_PREFIX + msg.SerializeToString())
        msg.key = self._my_key
        msg.signature = signature
        if ps._is_msg_seen(msg):
            return  # the same payload again: one message id (_content_id), as push_msg would drop it
        ps._mark_msg_seen(msg)
        await ps.router.publish(ps.my_id, msg)

    def topic_peers(self, topic: str) -> set[str]:
        """Connected peers that subscribe to ``topic``, as far as their subscriptions have reached us."""
        return {str(p) for p in self._pubsub.peer_topics.get(topic, ())}

    async def _guarded_pubsub_stream(self, stream: INetStream) -> None:
        """Pubsub's stream handler, with what it lets escape caught.

        py-libp2p 0.8.1 parses each inbound RPC with protobuf's ``ParseFromString``
        and catches its own errors but not protobuf's ``DecodeError``: that escapes
        into the connection's nursery and stops the whole host. So one garbled RPC
        from any peer would take a node (or the bridge) off the network. Here it
        costs the sender its stream and its place in our pubsub peers, like any
        other unreadable RPC. The stream is read ahead (:class:`_ReadAhead`).
        """
        peer = stream.muxed_conn.peer_id
        try:
            reader = _ReadAhead(stream)
            async with trio.open_nursery() as nursery:
                nursery.start_soon(reader.send_updates)
                await self._pubsub.stream_handler(reader)  # type: ignore[arg-type]
                nursery.cancel_scope.cancel()
        except Exception as exc:  # DecodeError and anything else a peer's bytes can raise
            log.info("pubsub stream dropped: unreadable RPC peer=%s err=%s", peer, type(exc).__name__)
            with contextlib.suppress(Exception):
                await stream.reset()
            with contextlib.suppress(Exception):
                self._pubsub._handle_dead_peer(peer)

    def handle(self, protocol_id: str, handler: Callable[[FrameStream], Awaitable[None]]) -> None:
        """Serve ``protocol_id``: ``handler`` gets a :class:`FrameStream`; errors never escape."""

        async def wrapped(stream: INetStream) -> None:
            correlation_id.set(new_id())
            peer = str(stream.muxed_conn.peer_id)
            fs = FrameStream(stream, peer)
            try:
                await handler(fs)
            except PeerError as exc:
                log.info("sync peer error peer=%s reason=%s", peer, exc)
                await fs.reset()
            except StreamError as exc:
                log.info("sync stream error peer=%s reason=%s", peer, exc)
                await fs.reset()
            except Exception:
                log.exception("sync handler failed peer=%s", peer)
                await fs.reset()
            else:
                await fs.close()

        self._host.set_stream_handler(TProtocol(protocol_id), wrapped)

    async def open(
        self, peer: str, protocol_id: str | Sequence[str], *, many: Sequence[str] = ()
    ) -> FrameStream:
        """A stream to ``peer`` on ``protocol_id`` (or the first of several it speaks, in order);
        :attr:`FrameStream.reusable` only if the negotiated protocol is one of ``many``."""
        offer = [protocol_id] if isinstance(protocol_id, str) else list(protocol_id)
        try:
            stream = await self._host.new_stream(ID.from_base58(peer), [TProtocol(p) for p in offer])
        except Exception as exc:
            raise PeerUnavailable(f"cannot open {' or '.join(offer)} to {peer}: {exc}") from None
        return FrameStream(stream, peer, many=str(stream.get_protocol()) in many)


def _content_id(msg: object) -> bytes:
    """Gossip message id = the payload itself hashed, so a re-published entry dedups."""
    import hashlib

    return hashlib.sha256(msg.data).digest()  # type: ignore[attr-defined]
