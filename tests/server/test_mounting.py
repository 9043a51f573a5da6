"""``create_app`` mounted inside another Starlette app (as in FastAPI's ``app.mount``), served by a
real uvicorn on 127.0.0.1 in this process; the outer app's lifespan owns the engine."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import httpx
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Mount, Route

import stepstone
from stepstone.server import create_app
from tests.support.serve import serve_app

from .stepstone_test_jobs import echo


async def test_mounted_app_serves_the_api_under_its_prefix() -> None:
    engine = stepstone.create_engine("memory:", polling_interval=0.05)
    engine.register(echo)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with engine:
            yield

    async def home(request: object) -> PlainTextResponse:
        return PlainTextResponse("the user's own page")

    outer = Starlette(routes=[Route("/", home), Mount("/jobs", app=create_app(engine))], lifespan=lifespan)
    async with serve_app(outer, log_config=None) as base, httpx.AsyncClient(base_url=base, timeout=10) as client:
        assert (await client.get("/")).text == "the user's own page"
        created = await client.post("/jobs/api/trigger", json={"jobName": "echo", "input": 5})
        assert created.status_code == 201
        run_id = created.json()["runId"]
        body = (await client.get("/jobs/api/subscribe", params={"runId": run_id})).text
        assert "event: run:complete" in body
        assert (await client.get("/jobs/api/run", params={"runId": run_id})).json()["output"] == {"got": 5}
        doc = (await client.get("/jobs/api/openapi.json")).json()
        assert doc["servers"] == [{"url": "/jobs/api"}]
        missing = await client.get("/jobs/api/nope")
        assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"
        assert "/jobs/api/openapi.json" in (await client.get("/jobs/")).text  # landing page
