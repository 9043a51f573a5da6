"""The official Durable Streams conformance suite (npm ``@durable-streams/server-conformance-tests``,
pinned in package-lock.json) against a real ``stepstone serve`` process on SQLite and on PostgreSQL,
with the reserved subscription APIs on: every one of its 338 tests must pass on each."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from ..streams.helpers import StreamServer
from ..support.serve import ROOT

SUITE = ROOT / "node_modules" / "@durable-streams" / "server-conformance-tests"


class PostgresStreamServer(StreamServer):
    """The same server on a PostgreSQL store (its own schema in this session's database)."""

    def __init__(self, db: Path, url: str) -> None:
        super().__init__(db, long_poll_timeout=0.5)
        self.pg_url = url

    @property
    def store(self) -> str:
        return self.pg_url


def _server(store: str, tmp_path: Path) -> StreamServer:
    if store == "sqlite":
        return StreamServer(tmp_path / "conformance.db", long_poll_timeout=0.5)
    from ..postgres import db as pgdb

    reason = pgdb.unavailable()
    if reason:
        pytest.skip(reason)
    return PostgresStreamServer(tmp_path / "conformance.db", pgdb.store_url())


@pytest.mark.slow
@pytest.mark.timeout(420)
@pytest.mark.parametrize("store", ["sqlite", "postgres"])
def test_the_official_conformance_suite_passes_in_full(store: str, tmp_path: Path) -> None:
    if shutil.which("node") is None or not SUITE.exists():
        pytest.fail("the conformance suite needs node and `npm ci` (node_modules/@durable-streams/...)")
    version = re.search(r'"version":\s*"([^"]+)"', (SUITE / "package.json").read_text())
    assert version is not None and version.group(1) == "0.3.6", "the suite version is pinned to 0.3.6"
    server = _server(store, tmp_path).start()
    try:
        env = {
            **os.environ,
            "CONFORMANCE_TEST_URL": server.url,
            "CONFORMANCE_LONGPOLL_MS": "500",
            "CONFORMANCE_SUBSCRIPTIONS": "1",
            "NO_COLOR": "1",
            "FORCE_COLOR": "0",
        }
        vitest = ROOT / "node_modules" / ".bin" / "vitest"
        run = subprocess.run(
            [str(vitest), "run", "tests/interop/conformance.test.mjs", "--reporter=default"],
            cwd=ROOT, env=env, capture_output=True, text=True, timeout=400,
        )  # fmt: skip
    finally:
        server.kill()
    output = re.sub(r"\x1b\[[0-9;]*m", "", run.stdout + run.stderr)
    failures = sorted(set(re.findall(r"^ FAIL .*$", output, re.M)))
    summary = re.search(r"Tests\s+(.*)\((\d+)\)", output)
    assert run.returncode == 0 and not failures, "\n".join(failures) or output[-4000:]
    assert summary is not None and summary.group(2) == "338", output[-2000:]
    assert summary.group(1).strip() == "338 passed", summary.group(0)
