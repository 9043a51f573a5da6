"""The stepstone job server: the jobs API (JSON + resumable SSE) as a Starlette ASGI app.

    from stepstone.server import create_app
    app = create_app(engine, authorize=check_token, site_dir="dist/site")

Needs the ``server`` extra (starlette, uvicorn). Never imported by ``stepstone`` itself, so the
browser (Pyodide) path never loads it.
"""

from ._app import create_app
from ._errors import BadRequest, Forbidden, HTTPError, Unauthorized
from ._routes import Authorize

__all__ = ["Authorize", "BadRequest", "Forbidden", "HTTPError", "Unauthorized", "create_app"]
