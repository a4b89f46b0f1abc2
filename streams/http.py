"""The worker's HTTP endpoints: /metrics (Prometheus), /healthz (alive), /readyz (ready)."""
from __future__ import annotations

import threading
import time
from socketserver import ThreadingMixIn
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import make_wsgi_app

from streams.metrics import Metrics

STALL_SECONDS = 60.0  # liveness fails when the processing loop has not turned for this long


class Health:
    """Set by the processing loop, read by the probes."""

    def __init__(self, metrics: Metrics):
        self.metrics = metrics
        self.last_loop = time.monotonic()
        self.ready = False
        self.reason = "starting"

    def tick(self) -> None:
        self.last_loop = time.monotonic()

    def set_ready(self, ready: bool, reason: str = "") -> None:
        self.ready, self.reason = ready, reason
        self.metrics.ready.set(1 if ready else 0)

    def alive(self) -> bool:
        return time.monotonic() - self.last_loop < STALL_SECONDS


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format, *args):  # noqa: A002 - signature from the stdlib
        pass


def make_app(metrics: Metrics, health: Health):
    metrics_app = make_wsgi_app(metrics.registry)

    def app(environ, start_response):
        path = environ.get("PATH_INFO", "/")
        if path == "/metrics":
            return metrics_app(environ, start_response)
        if path == "/healthz":
            ok = health.alive()
            body = b"ok\n" if ok else b"processing loop stalled\n"
        elif path == "/readyz":
            ok = health.ready
            body = b"ready\n" if ok else f"not ready: {health.reason}\n".encode()
        else:
            start_response("404 Not Found", [("Content-Type", "text/plain")])
            return [b"not found: try /metrics, /healthz or /readyz\n"]
        start_response("200 OK" if ok else "503 Service Unavailable", [("Content-Type", "text/plain")])
        return [body]

    return app


class PortInUse(RuntimeError):
    """The metrics endpoint cannot bind; the message says which setting to change."""


def serve(metrics: Metrics, health: Health, host: str, port: int) -> WSGIServer:
    """Start serving in a daemon thread; returns the server (server.server_port is the bound port)."""
    try:
        server = make_server(host, port, make_app(metrics, health), _Server, handler_class=_QuietHandler)
    except OSError as e:
        raise PortInUse(f"cannot serve metrics on {host}:{port}: {e.strerror}; choose another port with "
                        "--metrics-port / RECO_METRICS_PORT (0: `reco run` serves none, `reco demo` "
                        "takes any free one)") from None
    threading.Thread(target=server.serve_forever, name="metrics-http", daemon=True).start()
    return server
