"""The OPFS store's logic in CPython, on in-memory files: the whole Store contract (also with a
compaction after every write), a reopened store equal to the one that wrote the log, a cut-off
last write dropped, group commit, and the refusal after a failed write. (In Chromium, on real
OPFS files in a worker: test_contract_opfs.py.)"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

import stepstone
from stepstone import NewEvent, NewRun, SchemaError, StepRecord, StoreError
from stepstone.stores.opfs._core import LogStore
from stepstone.stores.opfs._log import decode_frames, encode_frame, header
from tests.stores.run_cases import CASES

pytestmark = pytest.mark.timeout(60)


class MemFile:
    def __init__(self, data: bytearray, stats: dict[str, int]) -> None:
        self.data = data
        self.stats = stats
        self.closed = False
        self.fail = False

    def size(self) -> int:
        return len(self.data)

    def read(self, offset: int, size: int) -> bytes:
        return bytes(self.data[offset : offset + size])

    def write(self, offset: int, data: bytes) -> None:
        assert not self.closed
        if self.fail:
            raise OSError("QuotaExceededError: no room left")
        if self.stats.get("slow"):
            time.sleep(0.001)  # as OPFS in a private window: in memory, behind IPC
        self.stats["writes"] = self.stats.get("writes", 0) + 1
        if len(self.data) < offset:
            self.data.extend(b"\0" * (offset - len(self.data)))
        self.data[offset : offset + len(data)] = data

    def truncate(self, size: int) -> None:
        del self.data[size:]

    def flush(self) -> None:
        self.stats["flushes"] = self.stats.get("flushes", 0) + 1

    def close(self) -> None:
        self.closed = True


class MemDir:
    """A database directory that outlives its store objects (a reopen sees the same bytes)."""

    def __init__(self) -> None:
        self.files: dict[int, bytearray] = {}
        self.stats: dict[str, int] = {}
        self.opened: list[MemFile] = []

    async def generations(self) -> list[int]:
        return sorted(self.files)

    async def open(self, gen: int) -> MemFile:
        file = MemFile(self.files.setdefault(gen, bytearray()), self.stats)
        self.opened.append(file)
        return file

    async def remove(self, gen: int) -> None:
        self.files.pop(gen, None)


class MemLogStore(LogStore):
    def __init__(self, directory: MemDir | None = None, **options: Any) -> None:
        super().__init__(**options)
        self.directory = directory or MemDir()

    async def _open_dir(self) -> MemDir:
        return self.directory


def state(store: LogStore) -> dict[str, Any]:
    """Everything a store knows, as plain data (leases left out: at open every lease is over)."""
    runs = {rid: (store._pos[rid], {**vars(run), "lease_expires_at": None}) for rid, run in store._runs.items()}
    return {
        "runs": runs,
        "order": list(store._runs),
        "steps": {rid: dict(steps) for rid, steps in store._steps.items() if steps},
        "events": {rid: list(evs) for rid, evs in store._events.items() if evs},
        "inbox": {rid: [list(q) for q in box] for rid, box in store._inbox.items() if box},
        "awaited": dict(store._awaited),
        "tombs": dict(store._tombs),
        "versions": list(store._versions),
        "counters": (store._counter, store._version),
        "indexes": (set(store._active), dict(store._suspended), {k: v for k, v in store._by_key.items() if v},
                    dict(store._idem), dict(store._children)),
    }  # fmt: skip


@pytest.mark.parametrize("compact_at", [1 << 30, 0], ids=["log", "compacting-after-every-write"])
@pytest.mark.parametrize("name", sorted(CASES))
async def test_contract_and_a_reopen_gives_the_same_store(name: str, compact_at: int) -> None:
    store = MemLogStore(compact_at=compact_at)
    await store.init()
    await CASES[name](store)
    await store.close()
    before = state(store)
    again = MemLogStore(store.directory)
    await again.init()
    assert state(again) == before
    assert len(store.directory.files) == 1, "one generation of the log is left"
    await again.close()


async def _fill(store: LogStore, n: int) -> list[str]:
    ids = []
    for i in range(n):
        t = time.time()
        run, _ = await store.create_run(NewRun(f"r{i}", "job", "1", {"i": i}, t), NewEvent("run:trigger", {}, t))
        ids.append(run.id)
    return ids


async def test_a_cut_off_last_write_is_dropped_and_the_rest_kept() -> None:
    store = MemLogStore()
    await store.init()
    await _fill(store, 3)
    good = len(store.directory.files[1])
    await _fill(store, 1)  # r0 again: never mind the id, it is the write that gets cut
    await store.close()
    data = store.directory.files[1]
    del data[len(data) - 5 :]  # the tab died in the middle of the last frame
    again = MemLogStore(store.directory)
    await again.init()
    assert [r.id for r in (await again.list_runs(stepstone.RunFilter()))[0]] == ["r2", "r1", "r0"]
    assert len(store.directory.files[1]) == good, "the cut-off frame is gone from the file"
    await _fill(again, 0)
    t = time.time()
    await again.create_run(NewRun("r9", "job", "1", None, t), NewEvent("run:trigger", {}, t))
    await again.close()
    third = MemLogStore(store.directory)
    await third.init()
    assert (await third.get_run("r9")) is not None, "writes after the repair are read back"


async def test_a_damaged_checksum_ends_the_log_there() -> None:
    frames = header(1) + encode_frame({"o": []}) + encode_frame({"x": 1})
    records, good = decode_frames(frames)
    assert len(records) == 3 and good == len(frames)
    broken = bytearray(frames)
    broken[-2] ^= 0xFF
    records, good = decode_frames(bytes(broken))
    assert len(records) == 2 and good == len(frames) - len(encode_frame({"x": 1}))
    assert decode_frames(b"\0" * 64) == ([], 0), "a zero-filled tail is not a frame"


async def test_a_log_from_a_newer_stepstone_is_refused() -> None:
    directory = MemDir()
    directory.files[1] = bytearray(encode_frame({"stepstone": "opfs", "schema": 99, "gen": 1}))
    with pytest.raises(SchemaError, match="newer stepstone"):
        await MemLogStore(directory).init()


async def test_an_unfinished_compaction_is_ignored() -> None:
    store = MemLogStore()
    await store.init()
    await _fill(store, 2)
    await store.close()
    store.directory.files[2] = bytearray(header(2) + encode_frame({"o": [["X", "r0", 99, 1.0]]}))  # no marker
    again = MemLogStore(store.directory)
    await again.init()
    assert {r.id for r in (await again.list_runs(stepstone.RunFilter()))[0]} == {"r0", "r1"}
    assert sorted(store.directory.files) == [1]


async def _churn(store: LogStore) -> None:
    await store.init()
    for run_id in await _fill(store, 60):
        if run_id != "r59":
            await store.delete_run(run_id)
        for _ in range(3):
            await asyncio.sleep(0)  # let a compaction that started finish


async def test_compaction_keeps_the_store_and_shrinks_the_log() -> None:
    plain, store = MemLogStore(), MemLogStore(compact_at=4_000)
    await _churn(plain)
    await _churn(store)
    live = state(store)
    assert (live["order"], set(live["tombs"])) == (state(plain)["order"], set(state(plain)["tombs"]))
    assert sorted(store.directory.files) not in ([], [1]), "it compacted"
    size = sum(len(f) for f in store.directory.files.values())
    assert size < len(plain.directory.files[1])
    await store.close()
    again = MemLogStore(store.directory)
    await again.init()
    assert state(again) == live


async def test_group_commit_writes_concurrent_steps_at_once_and_strict_flushes_each_group() -> None:
    store = MemLogStore(durability="strict")
    await store.init()
    await _fill(store, 4)
    t = time.time()
    runs = [await store.claim_next("w", ("job",), t, t + 30) for _ in range(4)]
    stats = store.directory.stats
    writes, flushes = stats["writes"], stats["flushes"]

    async def commit(run: Any) -> None:
        step = StepRecord(run.id, "s0", 0, "completed", 1, None, t, t)
        await store.commit_step(run.id, run.epoch, step, [NewEvent("step:complete", {"name": "s0"}, t)])

    await asyncio.gather(*(commit(r) for r in runs))
    assert (stats["writes"] - writes, stats["flushes"] - flushes) == (1, 1), "four commits, one write, one flush"
    await store.close()


@pytest.mark.parametrize("slow", [False, True], ids=["plain-file", "slow-file-system"])
async def test_relaxed_writes_at_once_on_a_plain_file_and_groups_on_a_slow_one(slow: bool) -> None:
    store = MemLogStore()
    store.directory.stats["slow"] = slow
    await store.init()
    await _fill(store, 12)  # enough writes to know what they cost
    t = time.time()
    runs = [await store.claim_next("w", ("job",), t, t + 30) for _ in range(4)]
    stats = store.directory.stats
    writes, flushes = stats["writes"], stats.get("flushes", 0)

    async def commit(run: Any) -> None:
        step = StepRecord(run.id, "s0", 0, "completed", 1, None, t, t)
        await store.commit_step(run.id, run.epoch, step, [NewEvent("step:complete", {"name": "s0"}, t)])

    await asyncio.gather(*(commit(r) for r in runs))
    assert stats["writes"] - writes == (1 if slow else 4)
    assert stats.get("flushes", 0) == flushes, "relaxed never flushes"
    await store.close()
    again = MemLogStore(store.directory)
    await again.init()
    assert [len(await again.get_steps(r.id)) for r in runs] == [1, 1, 1, 1]


async def test_after_a_failed_write_every_call_is_refused() -> None:
    store = MemLogStore()
    await store.init()
    await _fill(store, 1)
    store.directory.opened[-1].fail = True
    with pytest.raises(StoreError, match="could not write its log"):
        await _fill(store, 1)
    with pytest.raises(StoreError, match="reload the page"):
        await store.get_run("r0")


async def test_an_engine_on_it_resumes_a_run_after_a_reopen() -> None:
    """A tab closing mid-run: the next holder of the database resumes at the first unfinished step."""
    ran: list[int] = []
    directory = MemDir()
    closing = asyncio.Event()

    async def job(step: stepstone.Step, payload: Any) -> int:
        for i in range(4):
            await step.run(f"s{i}", lambda i=i: ran.append(i) or i)
            if i == 1 and not closing.is_set():
                closing.set()
                await asyncio.Event().wait()  # the tab "closes" here
        return 4

    first = stepstone.create_engine(MemLogStore(directory), polling_interval=0.05)
    first.register(stepstone.define_job("j", job))
    await first.init()
    run = await first.trigger("j")
    while len(ran) < 2:
        await asyncio.sleep(0.01)
    for task in first._worker._tasks:  # type: ignore[union-attr]
        task.cancel()
    await first.store.close()  # the process is gone; nothing was handed back
    second = stepstone.create_engine(MemLogStore(directory), polling_interval=0.05)
    second.register(stepstone.define_job("j", job))
    async with second:
        done = await second.wait(run.id, timeout=10)
        events = [e async for e in second.subscribe(run.id)]
    assert done.status == "completed" and ran == [0, 1, 2, 3]
    assert [e.seq for e in events] == list(range(len(events)))
    for execution in list(first._worker.executions.values()):  # type: ignore[union-attr]
        execution.task.cancel()  # type: ignore[union-attr]
