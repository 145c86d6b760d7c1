"""A TCP proxy of our own in front of the store, so that a test can make the store
unreachable and bring it back without touching the server itself (nor the machine's
broker). Cut, it closes every connection and refuses new ones at once, as a store whose
host went away; restored, it forwards again.

It runs on the operating system's own threads and sockets, untouched by eventlet's
monkey-patching (the tests' services run on eventlet in this process): cutting a
connection one green thread is reading from is what eventlet forbids.
"""
from __future__ import annotations

from contextlib import contextmanager, suppress
from urllib.parse import urlsplit

from eventlet.patcher import original

socket = original("socket")
threading = original("threading")


class StoreProxy:
    def __init__(self, target_host: str, target_port: int):
        self.target = (target_host, target_port)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self._open: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._cut = False
        self._closed = False
        threading.Thread(target=self._accept, name="store-proxy", daemon=True).start()

    def uri(self, **options) -> str:
        query = "&".join(["directConnection=true", *(f"{key}={value}" for key, value in options.items())])
        return f"mongodb://127.0.0.1:{self.port}/?{query}"

    def cut(self) -> None:
        with self._lock:
            self._cut = True
            sockets, self._open = self._open, set()
        for sock in sockets:
            _close(sock)

    def restore(self) -> None:
        with self._lock:
            self._cut = False

    def close(self) -> None:
        self._closed = True
        self.cut()
        _close(self.listener)

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            try:
                upstream = None if self._cut else socket.create_connection(self.target, timeout=5)
            except OSError:
                upstream = None
            with self._lock:
                forwarding = upstream is not None and not self._cut
                if forwarding:
                    self._open.update((client, upstream))
            if not forwarding:
                for sock in (client, upstream):
                    if sock is not None:
                        _close(sock)
                continue
            upstream.settimeout(None)
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (source, sink):
                _close(sock)
                with self._lock:
                    self._open.discard(sock)


def _close(sock: socket.socket) -> None:
    with suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    with suppress(OSError):
        sock.close()


@contextmanager
def store_proxy(mongo_uri: str):
    """A proxy in front of the store at ``mongo_uri``; yields it, closes it after."""
    parts = urlsplit(mongo_uri)
    proxy = StoreProxy(parts.hostname, parts.port)
    try:
        yield proxy
    finally:
        proxy.close()
