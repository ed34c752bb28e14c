"""The libp2p host on its own (node.net.host): listen sockets, start-up errors, mDNS.

Real hosts on 127.0.0.1; nothing here touches the LAN (the hosts that would run
mDNS are only built, never started).
"""

from __future__ import annotations

import logging
import secrets
import socket
from typing import Any

import pytest
import trio
import trio.testing

from node.errors import ListenError
from node.net.host import P2P, announces_on_lan


def _host(listen: list[str], *, mdns: bool = False) -> P2P:
    return P2P(peer_seed=secrets.token_bytes(32), listen=listen, mdns=mdns)


def _port(p2p: P2P) -> int:
    return int(p2p.addrs()[0].split("/tcp/")[1].split("/")[0])


def _reuseport_bind(port: int) -> OSError | None:
    """What another process of the same user gets when it binds ``port`` with SO_REUSEPORT."""
    s = socket.socket()
    try:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        s.bind(("127.0.0.1", port))
        s.listen()
    except OSError as exc:
        return exc
    finally:
        s.close()
    return None


async def _start_fails(p2p: P2P, match: str) -> None:
    """``p2p.run`` must fail with a :class:`ListenError` matching ``match`` before it starts."""
    with trio.fail_after(30), pytest.raises(BaseExceptionGroup) as caught:
        async with trio.open_nursery() as nursery:
            await nursery.start(p2p.run)
            nursery.cancel_scope.cancel()  # it started: leave, so the raises() above fails
    assert caught.group_contains(ListenError, match=match), caught.value


async def test_listen_socket_cannot_be_shared_with_so_reuseport() -> None:
    p2p = _host(["/ip4/127.0.0.1/tcp/0"])
    async with trio.open_nursery() as nursery:
        await nursery.start(p2p.run)
        port = _port(p2p)
        err = _reuseport_bind(port)
        assert err is not None, f"a SO_REUSEPORT socket could join our listen port {port}"
        assert "in use" in str(err)
        nursery.cancel_scope.cancel()


async def test_a_listen_address_in_use_is_a_listen_error() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        await _start_fails(_host([f"/ip4/127.0.0.1/tcp/{port}"]), rf"/ip4/127.0.0.1/tcp/{port}.*in use")


async def test_a_second_host_on_the_same_port_fails_and_the_first_keeps_serving() -> None:
    first = _host(["/ip4/127.0.0.1/tcp/0"])
    async with trio.open_nursery() as nursery:
        await nursery.start(first.run)
        port = _port(first)
        await _start_fails(_host([f"/ip4/127.0.0.1/tcp/{port}"]), "in use")
        third = _host(["/ip4/127.0.0.1/tcp/0"])
        await nursery.start(third.run)
        for _ in range(5):  # every dial lands on the first host, none on the refused one
            assert await third.connect(first.addrs()[0]) == first.peer_id
            await third.disconnect(first.peer_id)
        nursery.cancel_scope.cancel()


async def test_an_address_that_is_not_ours_is_a_listen_error() -> None:
    await _start_fails(_host(["/ip4/192.0.2.1/tcp/0"]), "192.0.2.1")  # TEST-NET-1: never a local address


@pytest.mark.parametrize(
    ("listen", "lan"),
    [
        (["/ip4/127.0.0.1/tcp/0"], False),
        (["/ip4/127.0.0.53/tcp/4001", "/ip6/::1/tcp/4001"], False),
        (["/ip4/0.0.0.0/tcp/4001"], True),
        (["/ip6/::/tcp/4001"], True),
        (["/ip4/127.0.0.1/tcp/0", "/ip4/192.168.1.20/tcp/4001"], True),
        ([], False),
    ],
)
def test_announces_on_lan_only_when_some_listen_address_is_not_loopback(listen: list[str], lan: bool) -> None:
    assert announces_on_lan(listen) is lan


async def _start_and_stop(p2p: P2P) -> None:
    async with trio.open_nursery() as nursery:
        await nursery.start(p2p.run)
        nursery.cancel_scope.cancel()


async def test_a_loopback_host_is_built_without_mdns(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="node.net.host"):
        p2p = _host(["/ip4/127.0.0.1/tcp/0"], mdns=True)
        assert p2p.mdns is False
        assert p2p._host.mDNS is None  # libp2p's mDNS service was never created
        await _start_and_stop(p2p)  # the skip is logged once the host is listening
    assert any("mDNS skipped" in r.getMessage() and "loopback" in r.getMessage() for r in caplog.records)


async def test_mdns_off_stays_off_and_logs_nothing_about_it(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="node.net.host"):
        p2p = _host(["/ip4/127.0.0.1/tcp/0"], mdns=False)
        assert p2p.mdns is False and p2p._host.mDNS is None
        await _start_and_stop(p2p)
    assert not any("mDNS" in r.getMessage() for r in caplog.records)


async def test_a_malformed_pubsub_rpc_costs_the_sender_its_stream_not_the_host_its_life() -> None:
    """py-libp2p's pubsub lets a protobuf DecodeError out of its stream handler; one garbled RPC
    from any peer would stop the receiving host. The host survives it and still gossips."""
    from libp2p.peer.id import ID

    from node.net.host import GOSSIP_PROTOCOLS

    victim, attacker, friend = (
        _host(["/ip4/127.0.0.1/tcp/0"]),
        _host(["/ip4/127.0.0.1/tcp/0"]),
        _host(["/ip4/127.0.0.1/tcp/0"]),
    )
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            for h in (victim, attacker, friend):
                await nursery.start(h.run)
            await attacker.connect(victim.addrs()[0])
            stream = await attacker._host.new_stream(ID.from_base58(victim.peer_id), [GOSSIP_PROTOCOLS[0]])
            garbage = b"\x0f\xff\xff\xff"  # field 1 with wire type 7: not protobuf
            await stream.write(bytes([len(garbage)]) + garbage)
            await trio.sleep(0.5)  # the victim reads it (and, unguarded, its host dies)
            await friend.connect(victim.addrs()[0])
            while victim.peer_id not in friend.topic_peers(friend.topics[-1]):
                await trio.sleep(0.05)
            await victim.publish(b"still here", victim.topics[-1])
            msg = await friend.gossip.receive()
            assert msg.data == b"still here"
            for h in (victim, attacker, friend):
                await h.close()
            nursery.cancel_scope.cancel()


# -- signed peer records on pubsub RPCs (built and checked once, not per message) ----------------


async def test_the_pubsub_modules_use_the_cached_record_functions() -> None:
    from libp2p.pubsub import gossipsub, pubsub

    from node.net import host as host_module

    for module in (pubsub, gossipsub):
        assert module.env_to_send_in_RPC is host_module._record_to_send
        assert module.maybe_consume_signed_record is host_module._consume_record


async def test_a_peer_record_is_verified_once_and_a_changed_or_forged_one_every_time(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from libp2p.pubsub.pb import rpc_pb2

    from node.net import host as host_module

    calls: list[bytes] = []
    original = host_module._check_record

    def counting(msg, host, peer_id):  # type: ignore[no-untyped-def]
        calls.append(msg.senderRecord)
        return original(msg, host, peer_id)

    monkeypatch.setattr(host_module, "_check_record", counting)
    a, b = _host(["/ip4/127.0.0.1/tcp/0"]), _host(["/ip4/127.0.0.1/tcp/0"])
    async with trio.open_nursery() as nursery:
        await nursery.start(a.run)
        await nursery.start(b.run)
        sender, receiver = a._host, b._host
        record, _ = host_module._record_to_send(sender)
        assert host_module._record_to_send(sender)[0] is record, "reused, not rebuilt, within the TTL"
        good = rpc_pb2.RPC(senderRecord=record)
        forged = rpc_pb2.RPC(senderRecord=record[:-1] + bytes([record[-1] ^ 1]))  # one signature bit
        peer = sender.get_id()

        assert host_module._consume_record(good, receiver, peer)
        assert host_module._consume_record(good, receiver, peer)
        assert calls == [record], "the same bytes from the same peer were verified once"

        assert not host_module._consume_record(forged, receiver, peer), "a forged record is refused"
        assert not host_module._consume_record(forged, receiver, peer), "every time, never remembered"
        assert len(calls) == 3
        assert host_module._consume_record(good, receiver, peer)
        assert len(calls) == 4, "after a refusal the good record is checked again"

        other = b._host.get_id()  # the same bytes claimed by another peer: checked, and refused
        assert not host_module._consume_record(good, receiver, other)
        assert len(calls) == 5

        monkeypatch.setattr(host_module, "SIGNED_RECORD_TTL", 0.0)
        assert host_module._consume_record(good, receiver, peer)
        assert len(calls) == 6, "past the TTL the record is checked again"
        nursery.cancel_scope.cancel()


async def test_an_owed_window_update_waits_a_moment_and_goes_at_once_when_a_quarter_window_is_owed(
    mock_clock: trio.testing.MockClock,
) -> None:
    """The read-ahead owes what a yamux read would send before returning (``send_window_update`` on
    that stream object); it sends it WINDOW_UPDATE_DELAY later, several owed as one, and at once
    when WINDOW_UPDATE_AT_ONCE is owed. The clock here moves only when the test moves it."""
    from node.net.host import WINDOW_UPDATE_AT_ONCE, WINDOW_UPDATE_DELAY, _ReadAhead

    sent: list[int] = []

    class Muxed:  # stands in for a YamuxStream: only the method the read-ahead replaces
        async def send_window_update(self, increment: int, skip_lock: bool = False) -> None:
            sent.append(increment)

    class Stream:
        muxed_stream = Muxed()

    reader = _ReadAhead(Stream())  # type: ignore[arg-type]
    owe = Stream.muxed_stream.send_window_update  # what yamux's read now calls
    async with trio.open_nursery() as nursery:
        nursery.start_soon(reader.send_updates)
        await owe(100)
        await owe(200)
        await trio.testing.wait_all_tasks_blocked()
        assert sent == []
        mock_clock.jump(WINDOW_UPDATE_DELAY)
        await trio.testing.wait_all_tasks_blocked()
        assert sent == [300]
        await owe(WINDOW_UPDATE_AT_ONCE)
        await trio.testing.wait_all_tasks_blocked()
        assert sent == [300, WINDOW_UPDATE_AT_ONCE]
        nursery.cancel_scope.cancel()


async def test_a_service_task_finds_its_parent_without_walking_the_task_tree(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """py-libp2p's service manager found a new task's parent by walking every task it runs (pubsub
    runs one per peer, and spawns one per gossip message it receives): node.net.host indexes them.
    The parent is the same: the task that spawns, if the manager runs it; else none (a root)."""
    from libp2p.tools.anyio_service import Service, background_trio_service
    from libp2p.tools.anyio_service.trio_tasks import FunctionTask

    class Idle(Service):
        async def run(self) -> None:
            await trio.sleep_forever()

    walk = FunctionTask.iterate_tasks

    def no_walk(cls: object, *tasks: object) -> object:
        raise AssertionError("the whole task tree was walked to find a parent")

    async def child() -> None:
        await trio.sleep_forever()

    new_roots: dict[str, int] = {}
    done = {label: trio.Event() for label in ("inside", "another manager's task")}

    async def spawner(label: str, m: Any) -> None:
        before = set(m._root_tasks)
        m.run_task(child)
        new_roots[label] = len(set(m._root_tasks) - before)
        done[label].set()
        await trio.sleep_forever()

    async with background_trio_service(Idle()) as m, background_trio_service(Idle()) as other:
        for _ in range(50):  # a tree worth walking
            m.run_daemon_task(trio.sleep_forever)
        await trio.sleep(0.01)
        count = len(list(walk(*m._root_tasks)))
        monkeypatch.setattr(FunctionTask, "iterate_tasks", classmethod(no_walk))
        m.run_task(spawner, "inside", m)  # from outside the manager: a root
        other.run_task(spawner, "another manager's task", m)
        for event in done.values():
            await event.wait()
        before = set(m._root_tasks)
        m.run_task(child)  # from this test's own task: a root
        new_roots["outside"] = len(set(m._root_tasks) - before)
        monkeypatch.undo()
        assert len(list(walk(*m._root_tasks))) == count + 4  # spawner and its child, two more children
        m.cancel()
        other.cancel()
    assert new_roots == {"inside": 0, "another manager's task": 1, "outside": 1}
