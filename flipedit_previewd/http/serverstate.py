"""What a connection may use of the server that accepted it, and what the server uses of a connection.

The two halves of the HTTP side meet here, in the manner of uvicorn's ``ServerState``: a connection
(``connection.ClientProtocol``) is given a ``ServerState`` (``server.Server`` is one), not the
server's class, and the server and its ledgers (``intake.ConnectionSlots``) see each connection as a
``Connection``. Both modules import this one; neither imports the other's class, so there is no
import cycle between them, and this is the whole of their coupling: what is not named here, a
connection cannot reach (mypy checks it).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from flipedit_previewd.config.schema import Config
    from flipedit_previewd.http.access import Guard
    from flipedit_previewd.http.intake import BodyBudget, ConnectionSlots
    from flipedit_previewd.http.lifecycle import LifecycleState, ServiceAPI
    from flipedit_previewd.http.protocol import Limits
    from flipedit_previewd.sd.fdstore import Handover


class Connection(Protocol):
    """One open connection, as the server (the drain) and the connection slots see it."""

    @property
    def idle(self) -> bool:
        """Between requests (or before the first): may be closed to make room for a new connection."""

    def evict(self) -> None:
        """Closed to make room for a new connection."""

    def settle(self, final: bool = False) -> bool:
        """One drain step; True once nothing more is owed on this connection."""


class ServerState(Protocol):
    """What every connection shares with the server: the service it serves through, the one lifecycle
    state, the live HTTP limits (replaced on a reload), the access guard, the two intake ledgers, the
    fd store hand-over, and the sets of open and refused connections (each connection adds and removes
    itself)."""

    @property
    def service(self) -> ServiceAPI: ...
    @property
    def lifecycle(self) -> LifecycleState: ...
    @property
    def config(self) -> Config: ...
    @property
    def limits(self) -> Limits: ...
    @property
    def request_timeout(self) -> float: ...
    @property
    def guard(self) -> Guard: ...
    @property
    def bodies(self) -> BodyBudget: ...
    @property
    def slots(self) -> ConnectionSlots[Connection]: ...
    @property
    def handover(self) -> Handover: ...
    @property
    def connections(self) -> set[Connection]: ...
    @property
    def refused(self) -> set[Connection]: ...
