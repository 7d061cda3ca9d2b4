"""Prometheus metrics of a service's RPCs, named as go-grpc-prometheus names them so
existing dashboards work, and the HTTP endpoint that serves them.

Each server has its own registry (several servers may share a process: tests,
``novalite up``); services add their own metrics to ``RunningServer.registry``.
"""

from __future__ import annotations

import socket
import threading
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry, Counter, Histogram, make_wsgi_app

# Fast RPCs are the point of this project: start at half a millisecond.
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
                   1.0, 2.5, 5.0, 10.0, float("inf"))
_LABELS = ("grpc_service", "grpc_method", "grpc_type")


class RpcMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.started = Counter(
            "grpc_server_started", "RPCs started on the server.", _LABELS, registry=registry)
        self.handled = Counter(
            "grpc_server_handled", "RPCs completed on the server, by status code.",
            (*_LABELS, "grpc_code"), registry=registry)
        self.handling_seconds = Histogram(
            "grpc_server_handling_seconds", "Time from the start of an RPC to its status.",
            _LABELS, buckets=LATENCY_BUCKETS, registry=registry)

    def observe_start(self, method: str, rpc_type: str) -> None:
        service, name = split_method(method)
        self.started.labels(service, name, rpc_type).inc()

    def observe_end(self, method: str, rpc_type: str, code: str, seconds: float) -> None:
        service, name = split_method(method)
        self.handled.labels(service, name, rpc_type, code).inc()
        self.handling_seconds.labels(service, name, rpc_type).observe(seconds)


def split_method(method: str) -> tuple[str, str]:
    """"/pkg.Service/Method" -> ("pkg.Service", "Method")."""
    service, _, name = method.lstrip("/").partition("/")
    return service, name


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _Server6(_Server):
    address_family = socket.AF_INET6


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """Scrapes every few seconds are not news."""


class MetricsEndpoint:
    """``/metrics`` over HTTP on ``host:port`` (port 0 picks one), in a thread."""

    # How often the serving thread looks for a stop: a stop waits at most this.
    POLL_SECONDS = 0.05

    def __init__(self, registry: CollectorRegistry, host: str, port: int) -> None:
        server_class = _Server6 if ":" in host else _Server
        self._server = make_server(host, port, make_wsgi_app(registry), server_class, _QuietHandler)
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        kwargs={"poll_interval": self.POLL_SECONDS},
                                        name=f"metrics:{port}", daemon=True)
        self._thread.start()
        self.port: int = self._server.server_port

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()
