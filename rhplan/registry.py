"""A process-wide table of open things by key (SSH connections, gateways): one lock,
and everything still in it closed at exit."""
from __future__ import annotations

import atexit
import threading
from collections.abc import Callable, Hashable
from typing import Generic, Protocol, TypeVar


class Closable(Protocol):
    def close(self) -> None: ...


K = TypeVar("K", bound=Hashable)
V = TypeVar("V", bound=Closable)


class Registry(Generic[K, V]):
    def __init__(self) -> None:
        self._items: dict[K, V] = {}
        self._lock = threading.Lock()
        atexit.register(self.close_all)

    def get(self, key: K) -> V | None:
        with self._lock:
            return self._items.get(key)

    def put(self, key: K, item: V) -> None:
        with self._lock:
            self._items[key] = item

    def get_or_make(self, key: K, make: Callable[[], V]) -> V:
        """The item under key, made (under the lock: one per key) if there is none."""
        with self._lock:
            item = self._items.get(key)
            if item is None:
                item = self._items[key] = make()
            return item

    def values(self) -> list[V]:
        with self._lock:
            return list(self._items.values())

    def forget(self, item: V) -> None:
        """Drop item (already closed) from the table, under whatever key it has."""
        with self._lock:
            for key in [k for k, v in self._items.items() if v is item]:
                del self._items[key]

    def close_all(self) -> None:
        """Close everything in the table and empty it (at exit, and between tests)."""
        with self._lock:
            items = list(self._items.values())
            self._items.clear()
        for item in items:
            item.close()
