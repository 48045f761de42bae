"""The overload test's measurements, run in a fresh interpreter (see test_overload_400_connections_20s).

Usage: python overload_probe.py URL CONNECTIONS SECONDS; prints {"capacity": ..., "overload": {...}} as JSON.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from helpers import overload_with_health_watch  # noqa: E402


def unique_path(counter: int) -> str:
    """Frame and width vary so renders are real work, not cache hits."""
    return f"/get_frame/{counter % 150}?width={640 + (counter // 150) % 640}"


def measure_capacity(url: str, seconds: float = 5.0, clients: int = 4) -> float:
    counter = [10_000_000]
    lock = threading.Lock()
    done = [0]
    end = time.monotonic() + seconds

    def run() -> None:
        with requests.Session() as session:
            while time.monotonic() < end:
                with lock:
                    counter[0] += 1
                    path = unique_path(counter[0])
                if session.get(url + path, timeout=10).status_code == 200:
                    with lock:
                        done[0] += 1

    threads = [threading.Thread(target=run) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return done[0] / seconds


if __name__ == "__main__":
    url, connections, seconds = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
    capacity = measure_capacity(url)
    stats = overload_with_health_watch(url, connections=connections, seconds=seconds, path=unique_path)
    print(json.dumps({"capacity": capacity, "overload": stats}))
