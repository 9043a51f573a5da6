"""JSON answers of the jobs API: the engine's strict, compact JSON (no NaN), UTF-8 as is."""

from __future__ import annotations

from typing import Any

from starlette.responses import Response
from starlette.types import ASGIApp

from .._util import dumps

__all__ = ["json_response"]


def json_response(data: Any, status: int = 200) -> ASGIApp:
    return Response(dumps(data), status_code=status, media_type="application/json")
