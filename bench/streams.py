"""Benchmark the Durable Streams server against the reference Node server, in one run.

    .venv/bin/python bench/streams.py                  # all five servers, all metrics
    .venv/bin/python bench/streams.py --only-appends   # just the three append metrics
    .venv/bin/python bench/streams.py --quick          # stepstone (SQLite) vs reference (memory) only

Starts, all on 127.0.0.1: ``stepstone serve`` on a temporary SQLite file at its default
(``synchronous=normal``: survives a process crash, no fsync), on SQLite with ``synchronous=full``
(an fsync per commit: survives power loss) and on the memory store; and the reference server
(``@durable-streams/server``, installed in ``bench/reference/``, ``bench/reference/server.mjs``)
in memory and on its file store (LMDB + segment files, an fdatasync per append). Drives each the
same way from this process over raw keep-alive HTTP/1.1 sockets (cheap, so the client does not
hide the servers' differences). Measures, per server:

* sequential appends/s: one connection, one 100-byte JSON append at a time;
* 8 in flight: eight connections appending at once;
* producer msgs/s: ``stepstone.streams.IdempotentProducer`` (batching by linger and size, 8 in
  flight) writing small JSON messages, acknowledged by ``flush``;
* appends/s with a live reader: sequential appends while an SSE reader follows the same stream,
  which already holds ``--prefill`` messages (the reader starts at its tail; the reference server
  scans the stream from its start on every wake-up, so its cost grows with the stream);
* delivery latency: an append is sent every 2 ms; the time from sending it to its arrival at the
  SSE reader (p50 / p99).

A throughput test stops after ``--appends`` appends or 10 s. All servers run at once and each
round visits them in turn; the best figure of ``--repeat`` rounds counts (this machine is shared,
and noise only ever makes a figure worse). Prints a table with ratios like for like (memory
against memory, fsync per commit against fsync per append) and SQLite's default against the
reference in memory (for latency: reference / stepstone, so > 1 means stepstone is better
everywhere). Bounded in time; stops every server by PID.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from stepstone._sse import SSEParser  # noqa: E402
from stepstone.streams import DurableStream, IdempotentProducer  # noqa: E402

PAD = "x" * 60


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# -- a minimal keep-alive HTTP/1.1 client ----------------------------------------------------------
class Conn:
    def __init__(self, port: int) -> None:
        self.port = port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def open(self) -> Conn:
        self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
        self.writer.transport.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return self

    async def request(
        self, method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None
    ) -> tuple[int, dict[str, str], bytes]:
        assert self.reader is not None and self.writer is not None
        lines = [f"{method} {path} HTTP/1.1", f"host: 127.0.0.1:{self.port}", f"content-length: {len(body)}"]
        lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
        self.writer.write(("\r\n".join(lines) + "\r\n\r\n").encode() + body)
        status, head = await self._head()
        if status in (204, 304) or method == "HEAD":
            return status, head, b""
        if "content-length" in head:
            return status, head, await self.reader.readexactly(int(head["content-length"]))
        data = b""
        async for chunk in self.chunks():
            data += chunk
        return status, head, data

    async def _head(self) -> tuple[int, dict[str, str]]:
        assert self.reader is not None
        raw = await self.reader.readuntil(b"\r\n\r\n")
        first, *rest = raw.decode("latin-1").split("\r\n")
        head = {}
        for line in rest:
            if ":" in line:
                k, v = line.split(":", 1)
                head[k.strip().lower()] = v.strip()
        return int(first.split()[1]), head

    async def chunks(self):  # type: ignore[no-untyped-def]
        assert self.reader is not None
        while True:
            size = int((await self.reader.readuntil(b"\r\n")).strip(), 16)
            if size == 0:
                await self.reader.readuntil(b"\r\n")
                return
            chunk = await self.reader.readexactly(size)
            await self.reader.readexactly(2)
            yield chunk

    async def stream_get(self, path: str) -> None:
        """Send a GET whose (chunked) body the caller then reads with ``chunks()``."""
        assert self.writer is not None
        self.writer.write(
            f"GET {path} HTTP/1.1\r\nhost: 127.0.0.1:{self.port}\r\naccept: text/event-stream\r\n\r\n".encode()
        )
        status, _ = await self._head()
        assert status == 200, status

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


JSON = {"content-type": "application/json"}


def _body(i: int) -> bytes:
    return json.dumps([{"i": i, "t": time.perf_counter_ns(), "pad": PAD}]).encode()


async def _create(port: int, path: str) -> None:
    conn = await Conn(port).open()
    status, _, _ = await conn.request("PUT", path, b"", JSON)
    conn.close()
    assert status in (200, 201), status


#: A throughput measurement stops after its appends or this many seconds, whichever comes first
#: (a server that fsyncs every append would otherwise take minutes).
BUDGET = 10.0


async def _one_by_one(conn: Conn, path: str, n: int, budget: float) -> tuple[int, float]:
    """Append one at a time until ``n`` appends or ``budget`` seconds; (appends, seconds)."""
    started = time.perf_counter()
    deadline = started + budget
    done = 0
    while done < n and (done % 100 or time.perf_counter() < deadline):
        status, _, _ = await conn.request("POST", path, _body(done), JSON)
        assert status == 204, status
        done += 1
    return done, time.perf_counter() - started


async def sequential(port: int, path: str, n: int, budget: float = BUDGET) -> float:
    await _create(port, path)
    conn = await Conn(port).open()
    done, elapsed = await _one_by_one(conn, path, n, budget)
    conn.close()
    return done / elapsed


async def in_flight(port: int, path: str, n: int, width: int = 8, budget: float = BUDGET) -> float:
    await _create(port, path)  # (an existing stream is fine: PUT is idempotent)
    conns = [await Conn(port).open() for _ in range(width)]
    counter = iter(range(n))
    started = time.perf_counter()
    deadline = started + budget
    done = 0

    async def worker(conn: Conn) -> None:
        nonlocal done
        for i in counter:
            status, _, _ = await conn.request("POST", path, _body(i), JSON)
            assert status == 204, status
            done += 1
            if time.perf_counter() > deadline:
                return

    await asyncio.gather(*(worker(c) for c in conns))
    elapsed = time.perf_counter() - started
    for c in conns:
        c.close()
    return done / elapsed


async def producer(base: str, path: str, n: int) -> float:
    async with await DurableStream.create(base + path, content_type="application/json") as stream:
        prod = IdempotentProducer(stream, "bench", max_in_flight=8, linger=0.005, max_batch_bytes=64 * 1024)
        started = time.perf_counter()
        for i in range(n):
            prod.append({"i": i, "pad": PAD})
            if i % 1000 == 999:
                await asyncio.sleep(0)
        await prod.flush()
        elapsed = time.perf_counter() - started
        await prod.detach()
        return n / elapsed


class SSEReader:
    """Follows a JSON stream over SSE; records each message's delivery latency."""

    def __init__(self, port: int, path: str, offset: str = "-1") -> None:
        self.port, self.path, self.offset = port, path, offset
        self.count = 0
        self.latencies: list[float] = []
        self.task: asyncio.Task[None] | None = None
        self.conn = Conn(port)

    async def start(self) -> None:
        await self.conn.open()
        await self.conn.stream_get(f"{self.path}?offset={self.offset}&live=sse")
        self.task = asyncio.ensure_future(self._run())

    async def _run(self) -> None:
        parser = SSEParser()
        async for chunk in self.conn.chunks():
            now = time.perf_counter_ns()
            for event in parser.feed(chunk):
                if event.event == "data":
                    for item in json.loads(event.data):
                        self.count += 1
                        self.latencies.append((now - item["t"]) / 1e6)

    async def wait_for(self, n: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while self.count < n:
            if time.monotonic() > deadline:
                raise TimeoutError(f"the reader got {self.count} of {n} messages")
            await asyncio.sleep(0.005)

    def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
        self.conn.close()


async def with_reader(port: int, path: str, n: int, budget: float = BUDGET) -> float:
    conn = await Conn(port).open()
    reader = SSEReader(port, path, "now")
    await reader.start()
    done, elapsed = await _one_by_one(conn, path, n, budget)
    await reader.wait_for(done, 120)
    reader.stop()
    conn.close()
    return done / elapsed


async def latency(port: int, path: str, n: int, interval: float = 0.002) -> tuple[float, float]:
    await _create(port, path)
    reader = SSEReader(port, path)
    await reader.start()
    conn = await Conn(port).open()
    for i in range(n):
        status, _, _ = await conn.request("POST", path, _body(i), JSON)
        assert status == 204, status
        await asyncio.sleep(interval)
    await reader.wait_for(n, 60)
    reader.stop()
    conn.close()
    lat = sorted(reader.latencies[n // 10 :])  # the first tenth warms up
    return statistics.median(lat), lat[int(len(lat) * 0.99) - 1]


# -- servers -----------------------------------------------------------------------------------------
@dataclass
class Server:
    name: str
    port: int
    proc: subprocess.Popen[bytes]

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait()


def _wait_port(port: int, proc: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError("server did not start")


def start_stepstone(store: str, name: str, src: str | None = None) -> Server:
    """``src``: run the server from another source tree (PYTHONPATH), e.g. an older checkout."""
    port = _free_port()
    cmd = [
        str(ROOT / ".venv" / "bin" / "stepstone"), "serve", "--store", store, "--jobs", "stepstone.demo",
        "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning",
    ]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": src} if src else None
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _wait_port(port, proc)
    return Server(name, port, proc)


def start_floor() -> Server:
    """``bench/_floor_app.py`` on uvicorn (uvloop + httptools, as ``stepstone serve`` runs)."""
    port = _free_port()
    cmd = [
        str(ROOT / ".venv" / "bin" / "python"), "-m", "uvicorn", "--app-dir", str(ROOT / "bench"), "_floor_app:app",
        "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning", "--no-access-log",
    ]  # fmt: skip
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _wait_port(port, proc)
    return Server(FLOOR, port, proc)


FLOOR = "floor (empty ASGI app)"
REFERENCE = ROOT / "bench" / "reference"


def start_reference(data_dir: str | None = None) -> Server:
    if shutil.which("node") is None or shutil.which("npm") is None:
        raise SystemExit("the reference server needs node and npm")
    if not (REFERENCE / "node_modules" / "@durable-streams" / "server").exists():
        subprocess.run(["npm", "install", "--no-audit", "--no-fund", "--loglevel=error"], cwd=REFERENCE, check=True)
    port = _free_port()
    cmd = [
        "node",
        str(REFERENCE / "server.mjs"),
        str(port),
        "30000",
        *([data_dir] if data_dir else []),
    ]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _wait_port(port, proc)
    return Server("reference (file)" if data_dir else "reference (memory)", port, proc)


METRICS = [
    "sequential appends/s",
    "appends/s, 8 in flight",
    "producer msgs/s (batched)",
    "appends/s, live reader",
    "delivery p50 ms",
    "delivery p99 ms",
]


APPEND_METRICS = METRICS[:3]


async def measure_round(
    server: Server, n: int, latency_samples: int, live_path: str, only_appends: bool = False
) -> dict[str, float]:
    tag = f"{time.time_ns()}"
    out: dict[str, float] = {}
    out["sequential appends/s"] = await sequential(server.port, f"/v1/stream/seq-{tag}", n)
    out["appends/s, 8 in flight"] = await in_flight(server.port, f"/v1/stream/par-{tag}", n)
    if server.name == FLOOR:  # it only answers plain appends
        return out
    out["producer msgs/s (batched)"] = await producer(server.base, f"/v1/stream/prod-{tag}", n * 10)
    if only_appends:
        return out
    out["appends/s, live reader"] = await with_reader(server.port, live_path, n)
    p50, p99 = await latency(server.port, f"/v1/stream/lat-{tag}", latency_samples)
    out["delivery p50 ms"] = p50
    out["delivery p99 ms"] = p99
    return out


async def run_all(servers: list[Server], args: argparse.Namespace) -> dict[str, dict[str, float]]:
    """Rounds that visit every server in turn (so a noisy moment on a shared machine hurts all of
    them alike); the best figure of the rounds counts."""
    live: dict[str, str] = {}
    for server in servers:
        live[server.name] = f"/v1/stream/live-{time.time_ns()}"
        if not args.only_appends and server.name != FLOOR:
            # History the reader does not need, one record per append; 64 in flight, so a server
            # that fsyncs every append (sharing one fsync among concurrent appends) fills it in time.
            await in_flight(server.port, live[server.name], args.prefill, width=64, budget=600)
    best: dict[str, dict[str, float]] = {s.name: {} for s in servers}
    for _ in range(args.repeat):
        for server in servers:
            figures = await measure_round(
                server, args.appends, args.latency_samples, live[server.name], args.only_appends
            )
            for metric, value in figures.items():
                old = best[server.name].get(metric)
                better = old is None or (value < old if metric.endswith(" ms") else value > old)
                best[server.name][metric] = value if better else old  # type: ignore[assignment]
    return best


#: Ratio columns: (ours, theirs, label). Like for like: memory against memory, and SQLite with an
#: fsync per commit (``synchronous=full``) against the reference's file store (an fdatasync per
#: append); plus SQLite at its default (crash-safe, no fsync) against the fastest reference.
PAIRS = [
    ("stepstone (sqlite)", "reference (memory)", "sqlite/ref mem"),
    ("stepstone (sqlite)", "reference (file)", "sqlite/ref file"),
    ("stepstone (sqlite full)", "reference (file)", "full/ref file"),
    ("stepstone (memory)", "reference (memory)", "memory/ref mem"),
    ("baseline (sqlite)", "reference (memory)", "base/ref mem"),
    ("floor (empty ASGI app)", "reference (memory)", "floor/ref mem"),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--appends", type=int, default=10_000, help="appends per throughput test (default 10,000)")
    parser.add_argument("--latency-samples", type=int, default=2000)
    parser.add_argument("--prefill", type=int, default=50_000, help="messages already in the live-reader stream")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="only stepstone on SQLite and the reference in memory (no memory store, no fsync-per-append servers)",
    )
    parser.add_argument("--also-memory", action="store_true", help=argparse.SUPPRESS)  # the default now
    parser.add_argument(
        "--floor",
        action="store_true",
        help="also measure bench/_floor_app.py (an empty ASGI app on uvicorn): the most any Python app can do here",
    )
    parser.add_argument(
        "--only-appends",
        action="store_true",
        help="measure only the append metrics (sequential, 8 in flight, producer); no prefill, no readers",
    )
    parser.add_argument(
        "--baseline-src",
        metavar="DIR",
        help="also measure stepstone (sqlite) served from this source tree, e.g. `git archive HEAD src | tar -x -C DIR`"
        " then DIR/src: a before/after comparison in one run",
    )
    parser.add_argument("--repeat", type=int, default=3, help="rounds over all servers; the best counts (default 3)")
    args = parser.parse_args()

    tmp = tempfile.mkdtemp(prefix="stepstone-bench-streams-")
    starters: list[Callable[[], Server]] = [lambda: start_stepstone(f"sqlite:///{tmp}/bench.db", "stepstone (sqlite)")]
    if not args.quick:
        starters.append(
            lambda: start_stepstone(f"sqlite:///{tmp}/full.db?synchronous=full", "stepstone (sqlite full)")
        )
        starters.append(lambda: start_stepstone("memory:", "stepstone (memory)"))
    if args.baseline_src:
        base_src = str(Path(args.baseline_src).resolve())
        starters.append(lambda: start_stepstone(f"sqlite:///{tmp}/baseline.db", "baseline (sqlite)", base_src))
    if args.floor:
        starters.append(start_floor)
    starters.append(start_reference)
    if not args.quick:
        os.makedirs(f"{tmp}/reference")
        starters.append(lambda: start_reference(f"{tmp}/reference"))
    servers: list[Server] = []
    try:
        for start in starters:
            servers.append(start())
        results = asyncio.run(run_all(servers, args))
    finally:
        for server in servers:
            server.stop()
        shutil.rmtree(tmp, ignore_errors=True)

    names = list(results)
    pairs = [(a, b, label) for a, b, label in PAIRS if a in results and b in results]
    metrics = APPEND_METRICS if args.only_appends else METRICS
    width = max(len(m) for m in metrics) + 2
    col = max(16, *(len(n) + 2 for n in names))
    print(f"Durable Streams: up to {args.appends} appends (or {BUDGET:.0f} s) per throughput test, live-reader "
          f"stream pre-filled with {args.prefill} appends, {args.latency_samples} latency samples, best of "
          f"{args.repeat} rounds; {os.cpu_count()} CPUs; ratios > 1 favour stepstone")  # fmt: skip
    print(f"{'':<{width}}" + "".join(f"{n:>{col}}" for n in names) + "".join(f"{p[2]:>16}" for p in pairs))
    for metric in metrics:
        row = f"{metric:<{width}}" + "".join(
            f"{results[n][metric]:>{col},.2f}" if metric in results[n] else f"{'-':>{col}}" for n in names
        )
        for ours_name, theirs_name, _ in pairs:
            if metric not in results[ours_name]:
                row += f"{'-':>16}"
                continue
            ours, theirs = results[ours_name][metric], results[theirs_name][metric]
            ratio = theirs / ours if metric.endswith(" ms") else ours / theirs
            row += f"{ratio:>15.2f}x"
        print(row)


if __name__ == "__main__":
    main()
