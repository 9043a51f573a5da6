"""Benchmark the job server: trigger → first SSE event latency, and SSE fan-out to many subscribers.

    .venv/bin/python bench/server.py                      # 100 and 1,000 subscribers, SQLite
    .venv/bin/python bench/server.py --subscribers 100,1000,2000 --store memory

Starts one real ``stepstone serve`` process on 127.0.0.1 (demo jobs, a temporary SQLite file) and
talks to it over raw HTTP/1.0 sockets from this process (cheap enough that the client does not
dominate what is measured). Prints a table; bounded in time.

* trigger → first event / run:complete: POST /trigger, then GET /subscribe from 0; the time until
  the first SSE event (seq 0) arrives, and until ``run:complete`` of that one-step run arrives (the
  whole round trip: claim, execute, commit, fan out).
* fan-out: N subscribers connect to one pending run (held back by a concurrency key), then it runs
  ``--steps`` x 4 events; delivery latency = time the bytes were read here minus the event's ``at``
  (written by the server when the event was created; one machine, one clock). The server's RSS is
  read from /proc/PID/status (VmRSS after connecting, VmHWM = peak), its CPU time from
  /proc/PID/stat (CPU/delivery = server CPU while the run streams / events delivered: the figure
  that other load on the machine disturbs least).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from stepstone._sse import SSEParser  # noqa: E402 - after the path tweak

TERMINAL = {"run:complete", "run:fail", "run:cancel"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def pct(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def cpu_seconds(pid: int) -> float:
    """User + system CPU time the process has used so far."""
    with open(f"/proc/{pid}/stat") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def proc_status(pid: int) -> dict[str, int]:
    out: dict[str, int] = {}
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                out[key] = int(value.split()[0]) // 1024  # MB
    return out


# -- raw HTTP/1.0 (the server then delimits bodies by closing: no chunked decoding needed) ----------
async def request(port: int, method: str, path: str, body: object = None) -> tuple[int, object]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    data = b"" if body is None else json.dumps(body).encode()
    writer.write(f"{method} {path} HTTP/1.0\r\nHost: b\r\nContent-Type: application/json\r\n"
                 f"Content-Length: {len(data)}\r\n\r\n".encode() + data)
    raw = await reader.read()
    writer.close()
    head, _, payload = raw.partition(b"\r\n\r\n")
    return int(head.split()[1]), json.loads(payload) if payload else None


async def open_sse(port: int, path: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, bytes]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET {path} HTTP/1.0\r\nHost: b\r\nAccept: text/event-stream\r\n\r\n".encode())
    head = await reader.readuntil(b"\r\n\r\n")
    if b" 200 " not in head.split(b"\r\n", 1)[0]:
        raise RuntimeError(f"subscribe failed: {head!r}")
    return reader, writer, b""


# -- trigger → first event ---------------------------------------------------------------------
async def trigger_latency(port: int, samples: int) -> tuple[list[float], list[float]]:
    """Per run: (time to the first SSE event, time to run:complete over SSE) after POST /trigger."""
    first_event, complete = [], []
    for _ in range(samples):
        t0 = time.perf_counter()
        status, body = await request(port, "POST", "/api/trigger",
                                     {"jobName": "demo-steps", "input": {"steps": 1, "delay": 0}})
        assert status == 201, body
        run_id = body["runId"]  # type: ignore[index]
        reader, writer, _ = await open_sse(port, f"/api/subscribe?runId={run_id}")
        parser = SSEParser()
        done = False
        while not done:
            chunk = await reader.read(65536)
            if not chunk:
                break
            for message in parser.feed(chunk):
                if len(first_event) < len(complete) + 1:
                    first_event.append(time.perf_counter() - t0)
                if message.event in TERMINAL:
                    complete.append(time.perf_counter() - t0)
                    done = True
        writer.close()
    return first_event, complete


# -- fan-out -------------------------------------------------------------------------------------
@dataclass
class Subscriber:
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    reads: list[tuple[float, bytes]] = field(default_factory=list)

    async def until_ready(self) -> None:
        """Read until the history (seq 0) has arrived."""
        data = b""
        while b"\n\n" not in data:
            chunk = await self.reader.read(65536)
            if not chunk:
                raise RuntimeError("stream ended early")
            data += chunk
        self.reads.append((time.time(), data))

    async def drain(self) -> None:
        while True:
            chunk = await self.reader.read(65536)
            if not chunk:
                return
            self.reads.append((time.time(), chunk))  # parse later: keep the client cheap here
            if b"event: run:complete" in chunk or b"event: run:fail" in chunk:
                return

    def latencies(self) -> tuple[list[float], list[int]]:
        parser = SSEParser()
        out, seqs = [], []
        for at, chunk in self.reads:
            for message in parser.feed(chunk):
                event = json.loads(message.data)
                seqs.append(event["seq"])
                if event["type"] not in ("run:trigger", "run:start"):  # not live for a held-back run
                    out.append(at - event["at"])
        return out, seqs


async def fan_out(port: int, pid: int, n: int, steps: int) -> dict[str, float]:
    key = f"fan-{n}-{time.time_ns()}"
    _, blocker = await request(port, "POST", "/api/trigger", {
        "jobName": "demo-steps", "input": {"steps": 1000, "delay": 1.0}, "concurrencyKey": key})
    _, target = await request(port, "POST", "/api/trigger", {
        "jobName": "demo-steps", "input": {"steps": steps, "delay": 0.05}, "concurrencyKey": key})
    run_id = target["runId"]  # type: ignore[index]
    subs: list[Subscriber] = []
    connect_started = time.perf_counter()
    for start in range(0, n, 100):
        batch = await asyncio.gather(*(open_sse(port, f"/api/subscribe?runId={run_id}")
                                       for _ in range(min(100, n - start))))
        subs.extend(Subscriber(r, w) for r, w, _ in batch)
    await asyncio.gather(*(s.until_ready() for s in subs))
    connect_s = time.perf_counter() - connect_started
    rss_connected = proc_status(pid)["VmRSS"]
    run_started = time.perf_counter()
    cpu_before = cpu_seconds(pid)
    await request(port, "POST", f"/api/cancel?runId={blocker['runId']}")  # type: ignore[index]
    await asyncio.wait_for(asyncio.gather(*(s.drain() for s in subs)), 120)
    run_s = time.perf_counter() - run_started
    cpu_s = cpu_seconds(pid) - cpu_before
    for s in subs:
        s.writer.close()
    latencies: list[float] = []
    complete = 0
    for s in subs:
        lat, seqs = s.latencies()
        latencies.extend(lat)
        complete += seqs == list(range(len(seqs))) and len(seqs) > 4 * steps
    status = proc_status(pid)
    return {
        "subscribers": n, "connect_s": connect_s, "run_s": run_s, "events": len(latencies) / max(n, 1),
        "p50_ms": pct(latencies, 50) * 1000, "p99_ms": pct(latencies, 99) * 1000,
        "max_ms": max(latencies) * 1000, "complete": complete,
        "rss_mb": rss_connected, "peak_rss_mb": status["VmHWM"], "cpu_s": cpu_s,
        "us_per_delivery": cpu_s / max(1, len(latencies)) * 1e6,
    }


# -- main ----------------------------------------------------------------------------------------
def start_server(store: str, port: int, log: Path) -> subprocess.Popen[bytes]:
    cmd = [sys.executable, "-m", "stepstone.cli", "serve", "--store", store, "--jobs", "stepstone.demo",
           "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning", "--concurrency", "8"]
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return proc
        except OSError:
            if proc.poll() is not None:
                raise SystemExit(f"server exited: {log.read_text()}") from None
            time.sleep(0.05)
    proc.kill()
    raise SystemExit("server did not start")


async def run(args: argparse.Namespace) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = max(n for n in args.subscribers) * 2 + 256
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(want, hard), hard))
    with tempfile.TemporaryDirectory() as tmp:
        store = "memory:" if args.store == "memory" else f"sqlite:///{tmp}/bench.db"
        port = free_port()
        proc = start_server(store, port, Path(tmp) / "server.log")
        try:
            async with asyncio.timeout(args.time_limit):
                idle = proc_status(proc.pid)["VmRSS"]
                first, started = await trigger_latency(port, args.samples)
                rows = [await fan_out(port, proc.pid, n, args.steps) for n in args.subscribers]
        finally:
            os.kill(proc.pid, signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()

    print(f"\nstepstone server bench — store {args.store}, Python {sys.version.split()[0]}, "
          f"{os.cpu_count()} CPUs, one server process (idle RSS {idle} MB)\n")
    print(f"trigger → first SSE event (seq 0), {len(first)} runs:   "
          f"p50 {statistics.median(first) * 1000:6.2f} ms   p99 {pct(first, 99) * 1000:6.2f} ms")
    print(f"trigger → run:complete over SSE,  {len(started)} runs:   "
          f"p50 {statistics.median(started) * 1000:6.2f} ms   p99 {pct(started, 99) * 1000:6.2f} ms\n")
    header = ("subscribers", "events/sub", "all in order", "delivery p50", "p99", "max", "connect", "RSS",
              "peak RSS", "server CPU", "CPU/delivery")
    print("  ".join(f"{h:>12}" for h in header))
    for r in rows:
        cells = [f"{r['subscribers']:.0f}", f"{r['events']:.0f}", f"{r['complete']:.0f}/{r['subscribers']:.0f}",
                 f"{r['p50_ms']:.1f} ms", f"{r['p99_ms']:.1f} ms", f"{r['max_ms']:.1f} ms",
                 f"{r['connect_s']:.2f} s", f"{r['rss_mb']:.0f} MB", f"{r['peak_rss_mb']:.0f} MB",
                 f"{r['cpu_s']:.2f} s", f"{r['us_per_delivery']:.1f} us"]
        print("  ".join(f"{c:>12}" for c in cells))
    print("\ngoal: 1,000 subscribers, delivery p99 <= 100 ms, RSS <= 300 MB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--subscribers", default="100,1000", type=lambda s: [int(x) for x in s.split(",")])
    parser.add_argument("--steps", type=int, default=20, help="steps of the watched run (4 events each)")
    parser.add_argument("--samples", type=int, default=200, help="runs for the trigger latency")
    parser.add_argument("--store", choices=["sqlite", "memory"], default="sqlite")
    parser.add_argument("--time-limit", type=float, default=240.0, help="give up after this many seconds")
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
