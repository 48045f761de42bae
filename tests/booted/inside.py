"""Run inside the booted container with Debian's /usr/bin/python3 and the installed package, as the user.

The container has its own network (loopback only), so the editor's side of each test runs in here:
    inside.py projects DIR              two projects (red, green stills; WAL databases) and the list with the first
    inside.py frame N                   one frame: {"status", "etag", "pixel", "cache"}
    inside.py switch DIR                the editor opens the green project; seconds until it is served
    inside.py editor OUT STOP [--no-retry]   ask frames until STOP exists; write counts and failures to OUT
    inside.py pool OUT STOP             the editor's own habit (tests/support/editor_client.py): 4 pooled keep-alive
                                        connections, no retry, a frame every 50 ms until STOP exists
"""

from __future__ import annotations

import io
import json
import os
import sqlite3
import sys
import time
from pathlib import Path

import requests
from PIL import Image

URL = "http://127.0.0.1:8081"
META = Path.home() / "Documents/flipedit_projects_metadata.sqlite"
RED, GREEN = (220, 20, 20), (20, 200, 20)


def make_projects(base: Path) -> None:
    from flipedit_previewd.demo.fixtures import add_clip, add_track, create_metadata_db, create_project_db

    base.mkdir(parents=True, exist_ok=True)
    for name, colour in (("red", RED), ("green", GREEN)):
        still = base / f"{name}.png"
        Image.new("RGB", (64, 36), colour).save(still)
        db = base / f"{name}.sqlite"
        create_project_db(db, 3)
        conn = sqlite3.connect(db)
        conn.execute("PRAGMA journal_mode=WAL")  # what the editor's Drift database uses
        with conn:
            track = add_track(conn, "t", 0)
            add_clip(conn, 3, track, str(still), "image", 0, 100_000, 0, (0, 0, 1280, 720))
        conn.close()
    META.parent.mkdir(parents=True, exist_ok=True)
    create_metadata_db(META, [("red", str(base / "red.sqlite"), int(time.time()) - 60)])
    conn = sqlite3.connect(META)
    conn.execute("PRAGMA journal_mode=WAL")  # the editor's list is a Drift database too
    conn.close()


def frame(n: int, session: requests.Session | None = None) -> dict[str, object]:
    response = (session or requests).get(f"{URL}/get_frame/{n}?width=128", timeout=30)
    pixel = None
    if response.status_code == 200:
        image = Image.open(io.BytesIO(response.content)).convert("RGB")
        pixel = image.getpixel((64, 36))
    return {
        "status": response.status_code,
        "etag": response.headers.get("ETag"),
        "pixel": pixel,
        "cache": response.headers.get("X-Cache"),
    }


def close_to(pixel: object, colour: tuple[int, int, int]) -> bool:
    return isinstance(pixel, (tuple, list)) and all(abs(a - b) <= 40 for a, b in zip(pixel, colour, strict=False))


def switch(base: Path) -> None:
    with requests.Session() as session:
        assert close_to(frame(5, session)["pixel"], RED)
        conn = sqlite3.connect(META)
        with conn:
            conn.execute(
                "INSERT INTO project_metadata_table (name, database_path, created_at, last_modified_at) "
                "VALUES ('green', ?, ?, ?)",
                (str(base / "green.sqlite"), int(time.time()), int(time.time())),
            )
        conn.close()
        begun = time.monotonic()
        while time.monotonic() - begun < 5:
            if close_to(frame(5, session)["pixel"], GREEN):
                print(json.dumps({"served_after_s": round(time.monotonic() - begun, 3)}))
                return
            time.sleep(0.05)
    print(json.dumps({"served_after_s": None}))


def editor(out: Path, stop: Path, retrying: bool) -> None:
    """The editor asking for frames while something happens to the daemon; every failure is counted.

    ``retrying``: the editor's client library (flipedit_previewd.client.api.PreviewClient: pooled
    keep-alive, retries on connection errors and 503). Without it: a plain keep-alive session that
    never retries, for when restarts keep connections (the integrator's no-retry variant).
    """
    from flipedit_previewd.client.api import PreviewClient

    client = PreviewClient(URL, timeout=10.0) if retrying else None
    session = requests.Session()
    ok, failures, versions, n = 0, [], set(), 0
    last_health = 0.0
    while not stop.exists():
        n += 1
        try:
            if client is not None:
                got = client.frame(n % 90)
                assert got is not None
            else:
                response = session.get(f"{URL}/get_frame/{n % 90}", timeout=10)
                if response.status_code != 200:
                    raise RuntimeError(f"HTTP {response.status_code}")
            ok += 1
        except Exception as exc:  # noqa: BLE001 - every failure is the finding
            failures.append(f"{type(exc).__name__}: {exc}"[:300])
        if time.monotonic() - last_health > 0.5:
            last_health = time.monotonic()
            try:
                versions.add(
                    str((client.health() if client else session.get(f"{URL}/health", timeout=10).json())["version"])
                )
            except Exception as exc:  # noqa: BLE001
                failures.append(f"health: {type(exc).__name__}: {exc}"[:300])
        time.sleep(0.02)
    out.write_text(json.dumps({"ok": ok, "failures": failures, "versions": sorted(versions)}))


def pool(out: Path, stop: Path) -> None:
    """Issue 18 through an upgrade: the daemon's restart must keep these very connections."""
    # In the container this script runs alone, with editor_client.py copied beside it (conftest); in a
    # checkout, the support package is importable.
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    try:
        from editor_client import EditorPool  # type: ignore[import-not-found, unused-ignore]
    except ImportError:
        from tests.support.editor_client import EditorPool

    editor_pool = EditorPool("127.0.0.1", 8081, connections=4, interval=0.05).start()
    try:
        while not stop.exists():
            time.sleep(0.1)
        report = editor_pool.stop()
    finally:
        editor_pool.close()
    out.write_text(
        json.dumps(
            {
                **report.summary(),
                "failures_list": report.failures[:20],
                "initial_ports": report.initial_ports,
                "final_ports": report.final_ports,
            }
        )
    )


def main() -> None:
    command, args = sys.argv[1], sys.argv[2:]
    if command == "projects":
        make_projects(Path(args[0]))
    elif command == "frame":
        print(json.dumps(frame(int(args[0]))))
    elif command == "switch":
        switch(Path(args[0]))
    elif command == "editor":
        editor(Path(args[0]), Path(args[1]), "--no-retry" not in args)
    elif command == "pool":
        pool(Path(args[0]), Path(args[1]))
    else:
        raise SystemExit(f"unknown command {command}")


if __name__ == "__main__":
    os.umask(0o077)
    main()
