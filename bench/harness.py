"""What the benchmarks share: where things are, the standard scene, servers started and stopped, percentiles.

The daemon harness of the tests (tests/support) is for one daemon under test; a benchmark starts several
servers side by side (the daemon, its older self, the peers), each its own process group, so they have
their own small class here. Run a benchmark as a module from the checkout: ``.venv/bin/python -m bench.peers``.
"""

from __future__ import annotations

import os
import shutil
import signal
import sqlite3
import subprocess
import tempfile
import time
from pathlib import Path

import requests
from PIL import Image

from flipedit_previewd.common.percentiles import summary as percentile_summary
from flipedit_previewd.demo.fixtures import add_clip, add_track, create_project_db
from tests.support.helpers import free_port

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
VENV = ROOT / ".venv/bin"
RESULTS = HERE / "results"  # what the benchmarks write: RESULTS.md, FOOTAGE.md, plots, profiles

__all__ = [
    "HERE",
    "RESULTS",
    "ROOT",
    "VENV",
    "Server",
    "free_port",
    "make_project",
    "make_scene",
    "pct",
    "uncached_args",
    "uncached_daemon",
]


def make_scene(directory: Path) -> dict[str, Path]:
    from flipedit_previewd.demo.fixtures import make_indexed_video

    big = make_indexed_video(directory / "clip1080.mp4", 240, (1920, 1080), 30, gop=30)
    small = make_indexed_video(directory / "clip720.mp4", 240, (1280, 720), 30, gop=30)
    still = directory / "still.jpg"
    Image.radial_gradient("L").resize((3000, 2000)).convert("RGB").save(still, quality=90)
    return {"big": big, "small": small, "still": still}


def make_project(directory: Path, scene: dict[str, Path]) -> Path:
    db = directory / "bench.sqlite"
    create_project_db(db, 3)
    conn = sqlite3.connect(str(db))
    with conn:
        bottom, middle, top = add_track(conn, "bg", 0), add_track(conn, "pip", 1), add_track(conn, "logo", 2)
        add_clip(conn, 3, bottom, str(scene["big"]), "video", 0, 8000, rect=(0, 0, 1280, 720))
        add_clip(conn, 3, middle, str(scene["small"]), "video", 0, 8000, rect=(640, 360, 600, 338))
        add_clip(conn, 3, top, str(scene["still"]), "image", 0, 8000, rect=(40, 40, 300, 200))
    conn.close()
    return db


class Server:
    def __init__(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> None:
        self.name, self.argv, self.env = name, argv, env or {}
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None
        self.cache: str | None = None  # a proxy cache of this server's own, removed at stop (never the user's)

    def start(self) -> None:
        argv = [a.replace("{port}", str(self.port)) for a in self.argv]
        env = {**os.environ, **self.env}
        if "XDG_CACHE_HOME" not in self.env:
            self.cache = tempfile.mkdtemp(prefix="flipedit-bench-cache-")
            env["XDG_CACHE_HOME"] = self.cache
        self.proc = subprocess.Popen(
            argv,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
            cwd=str(ROOT),
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if requests.get(self.url + "/health", timeout=2).status_code == 200:
                    requests.get(self.url + "/get_frame/0", timeout=30)  # warm
                    return
            except requests.RequestException:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"{self.name} did not start")

    def stop(self) -> None:
        if self.proc is not None:
            for sig in (signal.SIGTERM, signal.SIGKILL):
                try:
                    os.killpg(self.proc.pid, sig)  # the server's own process group: its workers too
                except ProcessLookupError:
                    break
                try:
                    self.proc.wait(timeout=10)
                    break
                except subprocess.TimeoutExpired:
                    continue
            self.proc = None
        if self.cache is not None:
            shutil.rmtree(self.cache, ignore_errors=True)
            self.cache = None


def uncached_args(db: Path, *more: str) -> list[str]:
    """The daemon's arguments to serve ``db`` on the Server's port with its rendered-frame cache off: the peers
    have none, so a benchmark compares renders, not cache hits."""
    return ["--project", str(db), "--listen", "127.0.0.1:{port}", "--frame-cache-bytes", "0", *more]


def uncached_daemon(db: Path, *more: str, name: str = "daemon", env: dict[str, str] | None = None) -> Server:
    """This tree's daemon (its console script) serving ``db`` with the rendered-frame cache off; its settings
    file is looked for beside the project (none there: the defaults, never the user's own)."""
    return Server(
        name,
        [str(VENV / "flipedit-previewd"), *uncached_args(db, *more)],
        {"XDG_CONFIG_HOME": str(db.parent), **(env or {})},
    )


def tree_daemon(name: str, tree: str | Path, args: list[str], env: dict[str, str] | None = None) -> Server:
    """The daemon of another checkout ``tree`` (a baseline), run by this venv's Python with that tree first on the
    path. ``-P``: with ``-m`` Python puts the working directory (this checkout, the Server's cwd) before
    PYTHONPATH, and the "baseline" would run this tree's code (bench/results/RESULTS.md, "A correction")."""
    return Server(
        name,
        [str(VENV / "python"), "-P", "-m", "flipedit_previewd", *args],
        {**(env or {}), "PYTHONPATH": str(Path(tree).resolve())},
    )


def pct(values: list[float]) -> dict[str, float]:
    return {k: float("nan") if v is None else v for k, v in percentile_summary(values, digits=None).items()}
