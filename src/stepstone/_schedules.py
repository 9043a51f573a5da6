"""Cron schedules, as durable runs: a schedule is a run of the built-in job ``stepstone.schedule``
that waits for its next tick, triggers the target job, and waits again. Stdlib only.

Because a schedule is a run, it needs nothing new from any store, survives restarts like any run,
works in every store (the browser's included) and shows what it waits for like any suspended run.
Each tick fires exactly once however many processes run the schedule: the target run is triggered
with the tick's time in its idempotency key (``schedule:<name>:<tick>``). A tick missed while
nothing ran (found more than a minute late) is skipped (``missed="skip"``, the default) or fired
late, at most ``catch_up`` of the latest (``missed="catch_up"``). Control (pause, resume) arrives
as events to the schedule's run; ``delete`` cancels it. After ``_GENERATION`` ticks a schedule run
hands over to a fresh one (like Temporal's continue-as-new), so its history stays short.
"""

from __future__ import annotations

import builtins
import contextlib
import datetime as dt
import hashlib
import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Protocol

from ._errors import InvalidInput, InvalidRunState, JobNotFound, RunNotFound, WaitTimeout
from ._models import Run, RunList, RunStatus, TriggerResult

if TYPE_CHECKING:  # (loaded where used: a client reading schedules needs neither)
    from ._cron import Cron
    from ._jobs import Job

__all__ = ["GRACE", "SCHEDULE_JOB", "Schedule", "Schedules", "schedule_job"]

SCHEDULE_JOB = "stepstone.schedule"
_LABEL = "stepstone.schedule"
_GENERATION = 50
_ACTIVE: tuple[RunStatus, ...] = ("pending", "running", "suspended")


class _Host(Protocol):
    """The engine, as schedules use it."""

    async def trigger(
        self,
        job: str | Job,
        input: Any = None,
        *,
        idempotency_key: str | None = None,
        concurrency_key: str | None = None,
        labels: Mapping[str, str] | None = None,
        version: str | None = None,
    ) -> TriggerResult: ...

    async def get_runs(
        self,
        job_name: str | None = None,
        status: RunStatus | Iterable[RunStatus] | None = None,
        labels: Mapping[str, str] | None = None,
        limit: int = 50,
        offset: int = 0,
        parent_id: str | None = None,
    ) -> RunList: ...

    async def send_event(self, run_id: str, name: str, data: Any = None) -> None: ...

    async def cancel(self, run_id: str) -> Run: ...

    @property
    def job_names(self) -> frozenset[str]: ...


@dataclass(frozen=True)
class Schedule:
    """A schedule as it stands: its definition, whether it is paused, when it fires next."""

    name: str
    job: str
    cron: str
    timezone: str
    input: Any
    missed: str
    catch_up: int
    version: str | None
    paused: bool
    next_fire_at: float | None
    run_id: str

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "job": self.job,
            "cron": self.cron,
            "timezone": self.timezone,
            "input": self.input,
            "missed": self.missed,
            "catchUp": self.catch_up,
            "version": self.version,
            "paused": self.paused,
            "nextFireAt": self.next_fire_at,
            "runId": self.run_id,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Schedule:
        return cls(
            str(data["name"]), str(data["job"]), str(data["cron"]), str(data.get("timezone") or "UTC"),
            data.get("input"), str(data.get("missed") or "skip"), int(data.get("catchUp") or 0), data.get("version"),
            bool(data.get("paused")), data.get("nextFireAt"), str(data.get("runId") or ""),
        )  # fmt: skip


def _definition(spec: Mapping[str, Any]) -> str:
    keys = ("name", "job", "cron", "timezone", "input", "missed", "catch_up", "version")
    text = json.dumps({k: spec.get(k) for k in keys}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _tick_key(name: str, tick: float) -> str:
    return f"schedule:{name}:{dt.datetime.fromtimestamp(tick, dt.UTC).isoformat()}"


class Schedules:
    """``engine.schedules``: create, pause, resume, delete and list cron schedules."""

    def __init__(self, engine: _Host, now: Callable[[], float]) -> None:
        self._engine = engine
        self._now = now

    async def create(
        self,
        name: str,
        job: str,
        cron: str,
        *,
        timezone: str = "UTC",
        input: Any = None,
        missed: str = "skip",
        catch_up: int = 1,
        version: str | None = None,
    ) -> Schedule:
        """Fire ``job`` (with ``input``) at every tick of ``cron`` in ``timezone``. Creating a schedule
        that exists with the same definition changes nothing; with another definition it replaces
        it. Raises JobNotFound for an unknown job, InvalidInput for bad cron text (naming the field),
        time zone or policy."""
        if not isinstance(name, str) or not name or len(name) > 200:
            raise InvalidInput(f"a schedule name must be a non-empty string (at most 200 characters), not {name!r}")
        if job not in self._engine.job_names:
            raise JobNotFound(f"schedule {name!r}: no job named {job!r} is registered here")
        from ._cron import Cron, CronError

        try:
            Cron.parse(cron, timezone)
        except CronError as exc:
            raise InvalidInput(f"schedule {name!r}: {exc}") from exc
        if missed not in ("skip", "catch_up"):
            raise InvalidInput(f"schedule {name!r}: missed must be 'skip' or 'catch_up', not {missed!r}")
        if isinstance(catch_up, bool) or not isinstance(catch_up, int) or not 0 <= catch_up <= 1000:
            raise InvalidInput(f"schedule {name!r}: catch_up must be a whole number from 0 to 1000, not {catch_up!r}")
        spec = {"name": name, "job": job, "cron": cron, "timezone": timezone, "input": input, "missed": missed,
                "catch_up": catch_up, "version": version}  # fmt: skip
        definition = _definition(spec)
        for run in await self._runs(name):
            if run.input.get("definition") == definition:
                return self._describe(run)
            with contextlib.suppress(InvalidRunState, RunNotFound):
                await self._engine.cancel(run.id)  # replaced by the new definition
        body = {**spec, "definition": definition, "last": self._now()}
        key = f"schedule:{name}:{definition}"  # two processes creating one schedule at once get one run
        created = await self._engine.trigger(SCHEDULE_JOB, body, idempotency_key=key, labels={_LABEL: name})
        if created.is_terminal:  # that run was deleted (or handed over) earlier: start afresh
            key = f"{key}:{self._now()!r}"
            created = await self._engine.trigger(SCHEDULE_JOB, body, idempotency_key=key, labels={_LABEL: name})
        return self._describe(created)

    async def get(self, name: str) -> Schedule | None:
        runs = await self._runs(name)
        return self._describe(runs[0]) if runs else None

    async def list(self) -> builtins.list[Schedule]:
        """Every schedule, by name."""
        runs = await self._engine.get_runs(SCHEDULE_JOB, _ACTIVE, limit=100_000)
        handed_over = {r.input.get("predecessor") for r in runs}
        oldest: dict[str, Run] = {}
        for run in sorted((r for r in runs if r.id not in handed_over), key=lambda r: r.created_at):
            oldest.setdefault(run.input["name"], run)
        return [self._describe(oldest[name]) for name in sorted(oldest)]

    async def pause(self, name: str) -> Schedule:
        """No tick fires until :meth:`resume`; ticks passed meanwhile count as missed."""
        return await self._control(name, "pause")

    async def resume(self, name: str) -> Schedule:
        return await self._control(name, "resume")

    async def delete(self, name: str) -> None:
        runs = await self._runs(name)
        if not runs:
            raise RunNotFound(f"no schedule named {name!r}")
        for run in runs:
            with contextlib.suppress(InvalidRunState, RunNotFound):
                await self._engine.cancel(run.id)

    async def _control(self, name: str, action: str) -> Schedule:
        runs = await self._runs(name)
        if not runs:
            raise RunNotFound(f"no schedule named {name!r}")
        for run in runs:
            await self._engine.send_event(run.id, "control", {"action": action, "at": self._now()})
        return replace(self._describe(runs[0]), paused=action == "pause")

    async def _runs(self, name: str) -> builtins.list[Run]:
        runs = await self._engine.get_runs(SCHEDULE_JOB, _ACTIVE, labels={_LABEL: name}, limit=100)
        live = [r for r in runs if not r.cancel_requested]
        handed_over = {r.input.get("predecessor") for r in live}  # (finishing: its successor counts)
        return sorted((r for r in live if r.id not in handed_over), key=lambda r: r.created_at)

    @staticmethod
    def _describe(run: Run) -> Schedule:
        spec = run.input
        wait = run.wait if run.status == "suspended" else None
        paused = wait is not None and wait.until is None and wait.events == ("control",)
        return Schedule(
            spec["name"], spec["job"], spec["cron"], spec["timezone"], spec.get("input"), spec["missed"],
            spec["catch_up"], spec.get("version"), paused, None if paused else (wait.until if wait else None), run.id,
        )  # fmt: skip


def schedule_job(engine: _Host, now: Callable[[], float]) -> Job:
    """The built-in job every engine registers: one run of it is one schedule (for a while)."""
    from ._cron import Cron
    from ._jobs import define_job

    async def run_schedule(step: Any, spec: dict[str, Any]) -> dict[str, Any]:
        cron = Cron.parse(spec["cron"], spec["timezone"])
        last, fired = float(spec["last"]), 0
        for generation in range(_GENERATION):
            plan = await step.run(
                f"plan-{generation}", lambda last=last: _plan(engine, cron, spec, step.run_id, last, now())
            )
            if plan.get("superseded"):
                return {"fired": fired, "superseded": plan["superseded"]}
            for tick in plan["fire"]:
                await step.run(f"fire-{tick!r}", lambda tick=tick: _fire(engine, spec, tick))
                fired += 1
            last = plan["last"]
            resumed_at = await _wait_for(step, plan["next"], now)
            if resumed_at is not None:  # ticks that passed while paused are not fired
                last = max(last, resumed_at)
        successor = {**spec, "last": last, "predecessor": step.run_id}
        await step.run("hand-over", lambda: _hand_over(engine, successor))
        return {"fired": fired, "last": last}

    return define_job(SCHEDULE_JOB, run_schedule)


#: A tick reached within this long after its time is on time (fired); one found later was missed.
GRACE = 60.0


async def _plan(
    engine: _Host, cron: Cron, spec: Mapping[str, Any], run_id: str, last: float, now: float
) -> dict[str, Any]:
    """What to fire now and when the next tick is. Ticks found more than ``GRACE`` late (nothing
    ran, or the schedule was paused) are missed: skipped, or the latest ``catch_up`` fired late.
    A schedule run that finds an older run of the same schedule ends (two processes created it
    at once); the tick keys keep the ticks once-only meanwhile."""
    runs = await engine.get_runs(SCHEDULE_JOB, _ACTIVE, labels={_LABEL: spec["name"]}, limit=100)
    mine = _order(runs, run_id)
    # (the run that handed over to this one is still finishing: it does not count)
    handed_over = spec.get("predecessor")
    older = [r for r in runs if r.id not in (run_id, handed_over) and not r.cancel_requested
             and (r.created_at, r.id) < mine]  # fmt: skip
    if older:
        return {"superseded": older[0].id}
    due = cron.ticks_between(last, now, 1_000_000)
    late = [t for t in due if now - t > GRACE]
    fire = [t for t in due if now - t <= GRACE]
    if spec["missed"] == "catch_up" and spec["catch_up"]:
        fire = late[-spec["catch_up"]:] + fire
    return {"fire": fire, "last": max(last, now), "next": cron.next_after(max(last, now))}


def _order(runs: Iterable[Run], run_id: str) -> tuple[float, str]:
    for run in runs:
        if run.id == run_id:
            return run.created_at, run.id
    return float("inf"), run_id


async def _wait_for(step: Any, tick: float, now: Callable[[], float]) -> float | None:
    """Until ``tick`` (returns None) — or, paused, until resumed: returns when (the caller plans
    again from there)."""
    paused = False
    while True:
        try:
            control = await step.wait_for_event("control", timeout=None if paused else max(tick - now(), 0.0))
        except WaitTimeout:
            return None
        action = control.get("action") if isinstance(control, dict) else None
        if action == "pause":
            paused = True
        elif action == "resume" and paused:
            return float(control.get("at") or 0.0)


async def _fire(engine: _Host, spec: Mapping[str, Any], tick: float) -> str:
    run = await engine.trigger(
        spec["job"], spec.get("input"), idempotency_key=_tick_key(spec["name"], tick), version=spec.get("version")
    )
    return run.id


async def _hand_over(engine: _Host, spec: Mapping[str, Any]) -> str:
    run = await engine.trigger(
        SCHEDULE_JOB,
        spec,
        idempotency_key=f"schedule:{spec['name']}:{spec['definition']}:{spec['last']!r}",
        labels={_LABEL: spec["name"]},
    )
    return run.id
