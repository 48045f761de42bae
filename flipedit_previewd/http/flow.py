"""Back-pressure of one connection, both ways, in the manner of uvicorn's ``FlowControl``.

Reading is paused while any of three reasons holds, and resumed only when none does:

- *backlog*: input the connection cannot serve yet (a request is being served, or its answer is
  not taken) beyond ``read_high`` bytes stays in the kernel (this bounds pipelining depth);
- *output*: the peer is not taking our output (the transport called ``pause_writing``), so the
  connection reads nothing more from it until it does;
- *parked*: the connection is being handed to systemd's fd store: what the peer sends now must
  stay in the socket for the next instance.

This object is the only caller of the transport's ``pause_reading``/``resume_reading``: every
producer of a reason asks it, so a reason set by one part is never cleared by another.
"""

from __future__ import annotations

import asyncio

# Input beyond this, while a request is being served, is left in the kernel; output beyond
# WRITE_HIGH_BYTES not yet taken by the peer stops reading on that connection until it drains.
# Memory per connection: about these two plus one response.
READ_HIGH_BYTES = 64 * 1024
WRITE_HIGH_BYTES = 256 * 1024


class FlowControl:
    """One connection's back-pressure: when reading is paused, and whether output is stalled."""

    def __init__(
        self, transport: asyncio.Transport, read_high: int = READ_HIGH_BYTES, write_high: int | None = None
    ) -> None:
        self._transport = transport
        self.read_high = read_high
        self.held = 0  # bytes received since the connection last became ready for a request
        self.write_paused = False
        self.parked = False
        self.reading_paused = False
        if write_high is not None:
            transport.set_write_buffer_limits(high=write_high)

    @property
    def backlogged(self) -> bool:
        return self.held > self.read_high

    def hold(self, size: int) -> None:
        """``size`` bytes arrived that the connection cannot serve now: past ``read_high``, stop reading."""
        self.held += size
        self._apply()

    def ready(self) -> None:
        """The connection serves again what arrives: forget what was held, read again unless output is stalled."""
        self.held = 0
        self._apply()

    def park(self) -> None:
        """Leave what the peer sends in the socket (the connection goes to the fd store)."""
        self.parked = True
        self._apply()

    def unpark(self) -> None:
        self.parked = False
        self._apply()

    def pause_writing(self) -> None:
        """The transport's own signal: output above its high-water mark."""
        self.write_paused = True
        self._apply()

    def resume_writing(self) -> None:
        """The transport's own signal: output back below its low-water mark."""
        self.write_paused = False
        self._apply()

    def _apply(self) -> None:
        pause = self.backlogged or self.write_paused or self.parked
        if pause == self.reading_paused or self._transport.is_closing():
            return
        self.reading_paused = pause
        if pause:
            self._transport.pause_reading()
        else:
            self._transport.resume_reading()
