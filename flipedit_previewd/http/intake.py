"""What the HTTP side takes in before a request is served: request bodies and connection slots.

Two small ledgers, no I/O (``connection.py`` asks them, ``server.py`` owns one of each):

- ``BodyBudget``: request bodies buffered in the process at once, across all connections. A body
  is charged its declared size when its head is admitted (after the access checks), before one
  byte of it is read, and given back when its request has been answered or its connection lost.
  A body that could never fit is 413; one that does not fit now is 503 with Retry-After.
- ``ConnectionSlots``: who gets a connection slot. A connection that has sent nothing is *silent*;
  one between requests is *idle*. Each client (``access.client_key``) may hold at most
  ``silent_share`` silent connections: its oldest is closed for a new one. When every slot is taken,
  the oldest silent connection, else the longest idle one, is closed to make room, so a new
  connection (the editor's) is served; only when every connection is in the middle of a request is
  the new one refused (503). Oldest first gives a connection that has just been accepted a grace of
  ``silent_share`` newer connections before it could be chosen: the editor sends its request
  within a millisecond of connecting.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class BodyBudget:
    """Bytes of request bodies buffered at once, across all connections."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0
        self.refused = 0

    def fits_ever(self, size: int) -> bool:
        return size <= self.limit

    def reserve(self, size: int) -> bool:
        """Charge ``size`` bytes now; False (nothing charged) when they do not fit."""
        if self.used + size > self.limit:
            self.refused += 1
            return False
        self.used += size
        return True

    def release(self, size: int) -> None:
        self.used = max(0, self.used - size)


class ConnectionSlots(Generic[T]):
    """Open connections by client, silent ones (never sent a byte) and idle ones in age order.

    ``idle(connection)`` says whether a connection that has spoken is between requests now (the
    idle order is checked when a victim is chosen: a connection busy again is skipped there and
    enters the order anew when it rests).
    """

    def __init__(self, limit: int, silent_share: int, idle: Callable[[T], bool]) -> None:
        self.limit = limit
        self.silent_share = max(1, silent_share)
        self.idle = idle
        self._key: dict[T, str] = {}
        self._silent: OrderedDict[T, None] = OrderedDict()  # oldest first
        self._silent_by_key: dict[str, OrderedDict[T, None]] = {}
        self._rested: OrderedDict[T, None] = OrderedDict()  # idle since longest first
        self.evicted = 0

    def __len__(self) -> int:
        return len(self._key)

    def opened(self, connection: T, key: str) -> None:
        self._key[connection] = key
        self._silent[connection] = None
        self._silent_by_key.setdefault(key, OrderedDict())[connection] = None

    def spoke(self, connection: T) -> None:
        """Its first byte arrived: no longer silent."""
        self._forget_silent(connection)

    def rested(self, connection: T) -> None:
        """Answered and waiting for its next request: the newest idle connection."""
        if connection in self._key:
            self._rested.pop(connection, None)
            self._rested[connection] = None

    def closed(self, connection: T) -> None:
        self._forget_silent(connection)
        self._rested.pop(connection, None)
        self._key.pop(connection, None)

    def make_room(self, key: str) -> list[T] | None:
        """Before a connection of ``key`` is accepted: the connections to close for it (forgotten here
        already), or None when there is no room (every slot busy with a request): refuse it."""
        victims: list[T] = []
        own = self._silent_by_key.get(key)
        if own and len(own) >= self.silent_share:
            victims.append(next(iter(own)))
            self.closed(victims[-1])
        if len(self._key) >= self.limit:
            victim = self._oldest_idle()
            if victim is None:
                return victims or None
            victims.append(victim)
            self.closed(victim)
        self.evicted += len(victims)
        return victims

    def _oldest_idle(self) -> T | None:
        if self._silent:
            return next(iter(self._silent))
        while self._rested:
            connection = next(iter(self._rested))
            if self.idle(connection):
                return connection
            del self._rested[connection]  # busy again: it re-enters the order when it rests
        return None

    def _forget_silent(self, connection: T) -> None:
        if connection not in self._silent:
            return
        del self._silent[connection]
        key = self._key[connection]
        own = self._silent_by_key[key]
        del own[connection]
        if not own:
            del self._silent_by_key[key]
