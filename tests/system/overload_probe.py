"""The overload test's measurements, run in a fresh interpreter (see test_overload_400_connections_20s).

Usage: python -m tests.system.overload_probe URL CONNECTIONS SECONDS; prints {"capacity": ..., "overload": {...}} as
JSON.
"""

from __future__ import annotations

import json
import sys

from tests.support.helpers import closed_loop, overload_with_health_watch


def unique_path(counter: int) -> str:
    """Frame and width vary so renders are real work, not cache hits."""
    return f"/get_frame/{counter % 150}?width={640 + (counter // 150) % 640}"


def measure_capacity(url: str, seconds: float = 5.0, clients: int = 4) -> float:
    """Frames per second served to ``clients`` closed-loop clients, each request a distinct frame."""
    statuses = closed_loop(url, clients, seconds, lambda client, n: unique_path(10_000_000 + n * clients + client))
    return statuses.count(200) / seconds


if __name__ == "__main__":
    url, connections, seconds = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
    capacity = measure_capacity(url)
    stats = overload_with_health_watch(url, connections=connections, seconds=seconds, path=unique_path)
    print(json.dumps({"capacity": capacity, "overload": stats}))
