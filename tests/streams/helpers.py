"""Real ``stepstone serve`` processes on 127.0.0.1 for the Durable Streams tests (also used by
``tests/interop``), and a couple of helpers for waiting with a deadline."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
JOBS = "stream_jobs"  # tests/streams/stream_jobs.py


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class StreamServer:
    """One ``stepstone serve`` subprocess on a SQLite file; restartable on the same port and file."""

    db: Path
    port: int = field(default_factory=free_port)
    long_poll_timeout: float = 0.5
    extra: list[str] = field(default_factory=list)
    proc: subprocess.Popen[bytes] | None = None
    log: Path | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stream_url(self, name: str) -> str:
        return f"{self.url}/v1/stream/{name}"

    def start(self, timeout: float = 20.0) -> StreamServer:
        assert self.proc is None or self.proc.poll() is not None, "already running"
        self.log = self.db.with_name(f"serve-{self.port}-{time.monotonic_ns()}.log")
        cmd = [
            sys.executable, "-m", "stepstone.cli", "serve",
            "--store", f"sqlite:///{self.db}", "--jobs", JOBS,
            "--host", "127.0.0.1", "--port", str(self.port),
            "--long-poll-timeout", str(self.long_poll_timeout),
            "--polling-interval", "0.1", "--log-level", "warning", *self.extra,
        ]  # fmt: skip
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")]),
            "PYTHONUNBUFFERED": "1",
        }
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=ROOT)
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise AssertionError(f"stepstone serve exited with {self.proc.returncode}:\n{self.output()}")
            try:
                if httpx.head(self.stream_url("__ready__"), timeout=1.0).status_code == 404:
                    return self
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                self.kill()
                raise AssertionError(f"stepstone serve was not ready in {timeout} s:\n{self.output()}")
            time.sleep(0.05)

    def kill(self) -> None:
        """SIGKILL, by PID: no clean shutdown, no flush."""
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill()

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log and self.log.exists() else ""


def wait_until(predicate: object, timeout: float = 10.0, interval: float = 0.02) -> None:
    """Poll ``predicate()`` until truthy, failing after ``timeout`` seconds."""
    assert callable(predicate)
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met in {timeout} s")
        time.sleep(interval)
