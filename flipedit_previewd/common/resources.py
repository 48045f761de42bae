"""Process resources the daemon's own limits need.

``max_connections`` open sockets, the listening sockets, pipes to the workers,
media and database files: with the usual soft ``RLIMIT_NOFILE`` of 1024 a
flood of connections would hit EMFILE before ``max_connections`` is reached,
and asyncio would stop accepting for a second. The soft limit is raised
towards the hard one (which systemd sets high), only as far as needed.
"""

from __future__ import annotations

import resource

SPARE_DESCRIPTORS = 512  # listeners, worker pipes, journal, databases, media, refused connections in flight


def raise_nofile(max_connections: int) -> tuple[int, int]:
    """Raise the soft RLIMIT_NOFILE to cover ``max_connections``; return (soft, hard) in effect."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = 2 * max_connections + SPARE_DESCRIPTORS
    if hard != resource.RLIM_INFINITY:
        want = min(want, hard)
    if want > soft:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
            soft = want
        except (ValueError, OSError):
            pass
    return soft, hard
