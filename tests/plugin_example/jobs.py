"""An application's jobs, as a user of stepstone writes them: only the public API."""

from __future__ import annotations

from typing import Any

import stepstone


@stepstone.job("trial", version="1")
async def trial(step: stepstone.Step, user: dict[str, Any]) -> dict[str, Any]:
    """Welcome a user, wait a week, then nudge them."""
    await step.run("welcome", lambda: f"welcome mail to {user['email']}")
    await step.sleep("wait-a-week", 7 * 86400)
    nudge = await step.run("nudge", lambda: f"nudge mail to {user['email']}")
    return {"sent": nudge}


@stepstone.job("greet", version="1")
async def greet(step: stepstone.Step, payload: dict[str, Any]) -> str:
    return await step.run("hello", lambda: f"hello {payload['name']}")
