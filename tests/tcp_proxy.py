"""A TCP proxy on 127.0.0.1 for fault tests: forwards every connection to one upstream address and,
on command, cuts the connections, stalls them, or restores them.

- ``cut()``: closes every open connection and refuses new ones (accepted, then closed at once)
  until ``restore()``: the client sees its broker vanish.
- ``stall()``: keeps the connections open but forwards nothing either way (new ones are accepted and
  stalled too) until ``restore()``: requests time out, as behind a partition without a leader.
- ``stall_on_produce(min_bytes, topic)``: forwards until a client sends a Produce request of at
  least ``min_bytes`` (a flush carrying counts, not a watermark report), to ``topic`` if one is
  given, then stalls everything, that request held back, as ``stall()`` does; ``triggered`` is set
  then. A stall that catches a delivery in flight, whatever the timing of the client's flushes.
- ``restore()``: forwards again; data held during a stall goes through then.

Used with the embedded broker listening on one port and advertising the proxy's, so every client of
the worker (producer, consumers, admin) reaches the broker through it: ``broker_behind_proxy``.
"""

from __future__ import annotations

import select
import socket
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from blipwatch.stream_app.embedded_broker import EmbeddedBroker, free_port

CHUNK = 65536


class TcpProxy:
    def __init__(self, upstream_port: int, port: int | None = None, host: str = "127.0.0.1"):
        self.host = host
        self.upstream = (host, upstream_port)
        self.port = port or free_port(host)
        self.mode = "open"            # "open", "cut", "stall" or "armed" (stall at a large Produce)
        self.min_bytes = 0
        self.topic = b""
        self.triggered = threading.Event()
        self.lock = threading.Lock()
        self.connections: list[tuple[socket.socket, socket.socket]] = []
        self.accepted = 0
        self.closed = threading.Event()
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind((host, self.port))
        self.listener.listen(128)
        self.thread = threading.Thread(target=self._accept, name="tcp-proxy", daemon=True)

    def start(self) -> "TcpProxy":
        self.thread.start()
        return self

    def cut(self) -> None:
        with self.lock:
            self.mode = "cut"
            connections, self.connections = self.connections, []
        for pair in connections:
            _close(*pair)

    def stall(self) -> None:
        with self.lock:
            self.mode = "stall"

    def stall_on_produce(self, min_bytes: int, topic: str = "") -> None:
        with self.lock:
            self.mode, self.min_bytes, self.topic = "armed", min_bytes, topic.encode()
            self.triggered.clear()

    def restore(self) -> None:
        with self.lock:
            self.mode = "open"

    def stop(self) -> None:
        self.closed.set()
        self.listener.close()
        self.cut()
        self.thread.join(5)

    def __enter__(self) -> "TcpProxy":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def _accept(self) -> None:
        while not self.closed.is_set():
            try:
                readable, _, _ = select.select([self.listener], [], [], 0.2)
                if not readable:
                    continue
                client, _ = self.listener.accept()
            except OSError:
                return
            with self.lock:
                mode = self.mode
            if mode == "cut":
                _close(client)
                continue
            try:
                server = socket.create_connection(self.upstream, timeout=5)
            except OSError:
                _close(client)
                continue
            with self.lock:
                self.connections.append((client, server))
                self.accepted += 1
            threading.Thread(target=self._pump, args=(client, server), daemon=True).start()

    def _pump(self, client: socket.socket, server: socket.socket) -> None:
        peer = {client: server, server: client}
        try:
            while not self.closed.is_set():
                with self.lock:
                    mode = self.mode
                    alive = (client, server) in self.connections
                if not alive:
                    return
                if mode == "stall":
                    time.sleep(0.05)   # nothing read: data waits in the kernel's buffers
                    continue
                readable, _, _ = select.select([client, server], [], [], 0.1)
                for sock in readable:
                    data = sock.recv(CHUNK)
                    if not data:
                        return
                    if sock is client and self._triggers(data) and not self._held(client, server):
                        return
                    peer[sock].sendall(data)
        except OSError:
            return
        finally:
            with self.lock:
                if (client, server) in self.connections:
                    self.connections.remove((client, server))
            _close(client, server)

    def _triggers(self, data: bytes) -> bool:
        """A client's chunk that starts a Produce request (API key 0 after the 4-byte size) of at
        least ``min_bytes``, naming the armed topic (in the chunk: a topic's name comes before its
        records), with the proxy armed: it switches every connection to a stall."""
        with self.lock:
            if self.mode != "armed" or len(data) < max(self.min_bytes, 6) or data[4:6] != b"\x00\x00":
                return False
            if self.topic and self.topic not in data:
                return False
            self.mode = "stall"
            self.triggered.set()
            return True

    def _held(self, client: socket.socket, server: socket.socket) -> bool:
        """Wait out the stall that a chunk started: True when the connection survives it (the
        chunk goes through then), False when it was cut."""
        while not self.closed.is_set():
            with self.lock:
                mode, alive = self.mode, (client, server) in self.connections
            if not alive:
                return False
            if mode != "stall":
                return True
            time.sleep(0.05)
        return False


@contextmanager
def broker_behind_proxy(log_path: Path) -> Iterator[tuple[EmbeddedBroker, TcpProxy]]:
    """An embedded broker that advertises a proxy's port, so every client reaches it through the
    proxy; both started, and stopped after."""
    broker_port, proxy_port = free_port(), free_port()
    broker = EmbeddedBroker(port=broker_port, advertised_port=proxy_port, log_path=log_path)
    with TcpProxy(broker_port, port=proxy_port) as proxy:
        broker.start()
        try:
            yield broker, proxy
        finally:
            broker.stop()


def _close(*sockets: socket.socket) -> None:
    for sock in sockets:
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        try:
            sock.close()
        except OSError:
            pass


__all__ = ["TcpProxy"]
