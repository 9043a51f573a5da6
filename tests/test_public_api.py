"""The fixed public names of DESIGN.md exist, and __all__ says exactly what is exported."""

from __future__ import annotations

import inspect

import stepstone


def test_fixed_names_exist() -> None:
    for name in ("job", "define_job", "create_engine", "Step", "Engine", "Run", "Event", "StepstoneError"):
        assert hasattr(stepstone, name), name
    engine_methods = (
        "register",
        "init",
        "stop",
        "trigger",
        "wait",
        "get_run",
        "get_runs",
        "get_steps",
        "retry",
        "cancel",
        "delete_run",
        "subscribe",
        "on",
        "sweep",
        "subscribe_runs",
        "snapshot",
    )
    for name in engine_methods:
        assert callable(getattr(stepstone.Engine, name)), name
    params = inspect.signature(stepstone.Engine.trigger).parameters
    assert {"idempotency_key", "concurrency_key", "labels"} <= set(params)
    assert "from_seq" in inspect.signature(stepstone.Engine.subscribe).parameters
    for opt in ("polling_interval", "heartbeat_interval", "stale_threshold", "concurrency"):
        assert opt in inspect.signature(stepstone.Engine.__init__).parameters


def test_all_is_sorted_and_complete() -> None:
    public = {n for n in dir(stepstone) if not n.startswith("_")} - {"testing", "annotations"}
    modules = {n for n in public if inspect.ismodule(getattr(stepstone, n))}
    assert set(stepstone.__all__) == (public - modules) | {"__version__"}
    assert list(stepstone.__all__) == sorted(stepstone.__all__)


def test_errors_form_one_tree_with_codes() -> None:
    errors = [
        getattr(stepstone, n)
        for n in stepstone.__all__
        if n.endswith(
            ("Error", "NotFound", "Input", "Output", "State", "Timeout", "URL", "Started", "Job", "Serializable")
        )
    ]
    for err in errors:
        if isinstance(err, type) and issubclass(err, Exception):
            assert issubclass(err, stepstone.StepstoneError), err
            assert (err.code and err.code != "stepstone_error") or err is stepstone.StepstoneError
