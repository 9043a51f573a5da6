"""Wake-ups across tabs: a :class:`~stepstone._notify.Hub` in this page whose publishes also go to
every other tab of the origin over a ``BroadcastChannel``. Pyodide only.
"""

from __future__ import annotations

import json
import logging
from typing import Any, ClassVar

import js
from pyodide.ffi import create_proxy

from .._notify import Hub
from ._values import is_nil

__all__ = ["BroadcastNotifier"]

log = logging.getLogger("stepstone")


class BroadcastNotifier:
    """Wake-ups for one database in this page, fanned out to other tabs over a BroadcastChannel.

    ``generation(key)`` counts publishes of ``key``: a waiter reads it before it reads the database
    and compares after, so a publish that lands while it reads is never lost.
    """

    _instances: ClassVar[dict[str, BroadcastNotifier]] = {}

    def __init__(self, channel_name: str) -> None:
        self.channel_name = channel_name
        self.hub = Hub()
        self._generations: dict[str, int] = {}
        self._users = 0
        self._channel: Any = None
        self._proxy: Any = None

    @classmethod
    def shared(cls, channel_name: str) -> BroadcastNotifier:
        notifier = cls._instances.get(channel_name)
        if notifier is None:
            notifier = cls._instances[channel_name] = cls(channel_name)
        return notifier

    def attach(self) -> None:
        self._users += 1
        if self._channel is not None or is_nil(getattr(js, "BroadcastChannel", None)):
            return
        self._proxy = create_proxy(self._on_message)
        self._channel = js.BroadcastChannel.new(self.channel_name)
        self._channel.onmessage = self._proxy

    def detach(self) -> None:
        self._users = max(0, self._users - 1)
        if self._users == 0 and self._channel is not None:
            self._channel.onmessage = None
            self._channel.close()
            self._proxy.destroy()
            self._channel = self._proxy = None

    def generation(self, key: str) -> int:
        return self._generations.get(key, 0)

    def _local(self, keys: list[str]) -> None:
        for key in keys:
            self._generations[key] = self._generations.get(key, 0) + 1
            self.hub.publish(key)

    def publish(self, *keys: str) -> None:
        """Wake waiters on ``keys`` in this page and in every other tab of this origin."""
        self._local(list(keys))
        if self._channel is not None:
            try:
                self._channel.postMessage(json.dumps(list(keys)))
            except Exception:  # other tabs fall back to polling
                log.debug("stepstone: BroadcastChannel post failed", exc_info=True)

    def _on_message(self, event: Any) -> None:
        try:
            keys = json.loads(str(event.data))
        except (TypeError, ValueError):
            return
        if isinstance(keys, list):
            self._local([str(k) for k in keys])
