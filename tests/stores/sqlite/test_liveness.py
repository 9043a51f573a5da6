"""``FileLockLiveness``: an owner is proven dead only when its lock file exists and its ``flock`` is
free. Real child processes hold the lock; one is SIGKILLed, as a crashed worker would be."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

import stepstone
from stepstone.stores.sqlite._liveness import FileLockLiveness

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="flock is POSIX only")

BOUND = 10.0  # seconds for a child python to start and report

CHILD = """
import asyncio, sys
from stepstone.stores.sqlite._liveness import FileLockLiveness

async def main() -> None:
    liveness = FileLockLiveness(sys.argv[1])  # keeps the locked file open while it lives
    await liveness.hold(sys.argv[2])
    print("holding", flush=True)
    sys.stdin.read()  # hold until killed (or stdin closes)

asyncio.run(main())
"""


class Child:
    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.reaped = False

    async def kill(self) -> None:
        """SIGKILL (no cleanup can run in the child) and reap it; idempotent."""
        if self.reaped:
            return
        if self.proc.returncode is None:
            self.proc.send_signal(signal.SIGKILL)
        await asyncio.wait_for(self.proc.communicate(), BOUND)
        self.reaped = True


@pytest.fixture
async def holder(tmp_path: Path) -> AsyncIterator[Child]:
    """A child python process holding owner ``child``'s lock in ``tmp_path / "owners"``."""
    src = str(Path(stepstone.__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([src, os.environ.get("PYTHONPATH", "")])}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", CHILD, str(tmp_path / "owners"), "child",
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, env=env,
    )  # fmt: skip
    child = Child(proc)
    try:
        assert proc.stdout is not None
        line = await asyncio.wait_for(proc.stdout.readline(), BOUND)
        assert line == b"holding\n", f"child did not report holding its lock: {line!r}"
        yield child
    finally:
        await child.kill()


async def test_an_owner_this_process_holds_is_not_dead(tmp_path: Path) -> None:
    mine = FileLockLiveness(str(tmp_path / "owners"))
    await mine.hold("me")
    assert await mine.is_dead("me") is False
    # another liveness object (as another store of the same file would have) cannot take the lock
    assert await FileLockLiveness(str(tmp_path / "owners")).is_dead("me") is False
    assert (tmp_path / "owners" / "me.lock").exists()
    await mine.release("me")


async def test_an_owner_released_cleanly_is_not_proven_dead(tmp_path: Path) -> None:
    mine = FileLockLiveness(str(tmp_path / "owners"))
    await mine.hold("me")
    await mine.release("me")
    assert not (tmp_path / "owners" / "me.lock").exists()
    assert await FileLockLiveness(str(tmp_path / "owners")).is_dead("me") is False  # missing file proves nothing
    assert await mine.is_dead("me") is False


async def test_an_unknown_owner_is_not_dead(tmp_path: Path) -> None:
    assert await FileLockLiveness(str(tmp_path / "owners")).is_dead("nobody") is False
    assert not (tmp_path / "owners").exists()  # asking creates nothing
    (tmp_path / "owners").mkdir()
    assert await FileLockLiveness(str(tmp_path / "owners")).is_dead("nobody") is False
    assert list((tmp_path / "owners").iterdir()) == []


async def test_owner_names_are_made_safe_for_the_file_system(tmp_path: Path) -> None:
    mine = FileLockLiveness(str(tmp_path / "owners"))
    await mine.hold("../host:1234/x")
    assert [p.name for p in (tmp_path / "owners").iterdir()] == [".._host_1234_x.lock"]
    assert await FileLockLiveness(str(tmp_path / "owners")).is_dead("../host:1234/x") is False
    await mine.release("../host:1234/x")
    assert list((tmp_path / "owners").iterdir()) == []


async def test_a_live_child_holding_its_lock_is_not_dead(tmp_path: Path, holder: Child) -> None:
    liveness = FileLockLiveness(str(tmp_path / "owners"))
    assert (tmp_path / "owners" / "child.lock").exists()
    assert await liveness.is_dead("child") is False
    assert await liveness.is_dead("child") is False  # asking does not disturb the holder
    assert holder.proc.returncode is None
    assert (tmp_path / "owners" / "child.lock").exists()


async def test_a_sigkilled_child_is_proven_dead_at_once_and_its_lock_file_removed(
    tmp_path: Path, holder: Child
) -> None:
    liveness = FileLockLiveness(str(tmp_path / "owners"))
    assert await liveness.is_dead("child") is False
    await holder.kill()
    assert holder.proc.returncode == -signal.SIGKILL
    assert (tmp_path / "owners" / "child.lock").exists()  # nobody cleaned up: it was killed
    assert await liveness.is_dead("child") is True
    assert not (tmp_path / "owners" / "child.lock").exists()
    # proven once: the file is gone now, and a missing file proves nothing
    assert await liveness.is_dead("child") is False
