"""RPC to a peer service with a time limit.

nameko's ``RpcProxy`` waits for a reply for ever; a peer whose queue exists but whose
instances are all down would hang the caller (an HTTP request at the edge, a worker of a
service asking intake). ``TimedRpcProxy`` is the same proxy whose replies give up after
``RPC_TIMEOUT`` seconds (settings) with nameko's ``RpcTimeout``, which the edge answers
with 503, like ``UnknownService`` (no queue at all).
"""
from __future__ import annotations

import time

import eventlet
from kombu.exceptions import OperationalError
from nameko.exceptions import ContainerBeingKilled, RpcTimeout, UnknownService
from nameko.rpc import RpcProxy

from services.common.config import from_container

# What a failure of the broker or of a peer looks like to an RPC caller.
UNAVAILABLE = (RpcTimeout, UnknownService, ContainerBeingKilled, OperationalError, ConnectionError)


class TimedRpcProxy(RpcProxy):
    def setup(self):
        super().setup()
        self.timeout = from_container(self.container.config).rpc_timeout

    def get_dependency(self, worker_ctx):
        proxy = super().get_dependency(worker_ctx)
        return TimedServiceProxy(proxy, self.timeout, self.rpc_reply_listener)


class TimedServiceProxy:
    def __init__(self, proxy, timeout: float, listener):
        self._proxy = proxy
        self._timeout = timeout
        self._listener = listener

    def __getattr__(self, name):
        if name.startswith("_"):
            raise AttributeError(name)
        return TimedMethodProxy(getattr(self._proxy, name), self._timeout, self._listener,
                                f"{self._proxy.service_name}.{name}")


class TimedMethodProxy:
    def __init__(self, method, timeout: float, listener, label: str):
        self._method = method
        self._timeout = timeout
        self._listener = listener
        self._label = label

    def __call__(self, *args, **kwargs):
        return self.call_async(*args, **kwargs).result()

    def call_async(self, *args, **kwargs) -> TimedReply:
        # Raises UnknownService at once when no queue is bound for the peer.
        reply = self._method.call_async(*args, **kwargs)
        return TimedReply(reply, time.monotonic() + self._timeout, self._listener, self._label)


class TimedReply:
    def __init__(self, reply, deadline: float, listener, label: str):
        self._reply = reply
        self._deadline = deadline
        self._listener = listener
        self._label = label

    def result(self, timeout: float | None = None):
        """The peer's answer (or its error, raised); ``RpcTimeout`` after the deadline."""
        remaining = self._deadline - time.monotonic()
        if timeout is not None:
            remaining = min(remaining, timeout)
        try:
            with eventlet.Timeout(max(remaining, 0.0), RpcTimeout(self._label)):
                return self._reply.result()
        except RpcTimeout:
            self._forget()
            raise

    def _forget(self):
        # A late reply must not keep the waiting event alive; the listener keeps them by
        # correlation id, which nameko does not hand back, so find it by identity.
        events = getattr(self._listener, "_reply_events", {})
        for correlation_id, event in list(events.items()):
            if event is self._reply.reply_event:
                events.pop(correlation_id, None)
