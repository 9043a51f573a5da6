"""The jobs an engine can run: by name, and by version within a name. Stdlib only.

Several versions of one job may be registered side by side while old runs drain: a run executes
only on code of its own version (the worker claims ``(name, version)`` pairs), and a trigger picks
the newest version unless told otherwise. "Newest" is the greatest version in natural order
(``"10"`` after ``"9"``, ``"2024-06"`` after ``"2024-05"``), so registering an old version next to
a new one never routes new runs to old code.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from ._errors import DuplicateJob, JobNotFound
from ._jobs import Job

__all__ = ["Registry", "version_key"]

_CHUNKS = re.compile(r"(\d+)")


def version_key(version: str) -> tuple[tuple[int, int | str], ...]:
    """Natural order: digit runs compare as numbers, the rest as text."""
    return tuple((0, int(part)) if part.isdigit() else (1, part) for part in _CHUNKS.split(version) if part)


class Registry:
    def __init__(self) -> None:
        #: name → version → Job; the worker's runtime holds this very dict.
        self.jobs: dict[str, dict[str, Job]] = {}

    def add(self, job: Job) -> None:
        versions = self.jobs.setdefault(job.name, {})
        existing = versions.get(job.version)
        if existing is not None and existing is not job:
            raise DuplicateJob(f"a different job named {job.name!r} is already registered at version {job.version!r}")
        versions[job.version] = job

    def get(self, name: str, version: str | None = None) -> Job:
        versions = self.jobs.get(name)
        if not versions:
            known = ", ".join(sorted(self.jobs)) or "none"
            raise JobNotFound(f"no job named {name!r} is registered (registered: {known})")
        if version is None:
            return versions[max(versions, key=version_key)]
        job = versions.get(str(version))
        if job is None:
            known = ", ".join(sorted(versions, key=version_key))
            raise JobNotFound(f"job {name!r} has no version {version!r} registered here (registered: {known})")
        return job

    def newest(self) -> Iterator[Job]:
        """The newest version of each job, by name."""
        for name in sorted(self.jobs):
            yield self.get(name)

    def __iter__(self) -> Iterator[Job]:
        for name in sorted(self.jobs):
            for version in sorted(self.jobs[name], key=version_key):
                yield self.jobs[name][version]
