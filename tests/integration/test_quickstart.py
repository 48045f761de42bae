"""The README's quick start, walked as a new user would: every line runs and prints what the README says.

The lines come from the README itself (between the ``quickstart`` markers), so the README cannot drift
from what the commands print. ``make demo`` runs in the background on a free port with its own
XDG_DATA_HOME, XDG_RUNTIME_DIR and XDG_CACHE_HOME (so nothing of the user's, and no other test's socket, is touched);
the ``previewctl`` lines run beside it as written, finding the demo by its unix socket.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
from pathlib import Path

from tests.support.helpers import ROOT, free_port, wait_for

LINE = re.compile(r'^(?P<command>.+?)\s+# prints "(?P<expected>[^"]+)"$')


def quickstart() -> list[tuple[str, str]]:
    text = (ROOT / "README.md").read_text()
    block = text[text.index("<!-- quickstart") : text.index("<!-- /quickstart -->")]
    steps = [LINE.match(line.strip()) for line in block.splitlines() if '# prints "' in line]
    assert steps and all(steps), block
    return [(m["command"], m["expected"]) for m in steps if m]


def test_the_readme_quick_start_runs_as_written(tmp_path: Path) -> None:
    steps = quickstart()
    assert steps[0][0] == "make demo"
    port = free_port()
    runtime = tmp_path / "run"
    runtime.mkdir(mode=0o700)
    env = {
        **os.environ,
        "PORT": str(port),
        "XDG_DATA_HOME": str(tmp_path / "data"),
        "XDG_RUNTIME_DIR": str(runtime),
        "XDG_CACHE_HOME": str(tmp_path / "cache"),
    }  # proxy media (proxy/) goes to the cache
    env.pop("NO_COLOR", None)
    log = tmp_path / "demo.log"
    with open(log, "wb") as out:
        demo = subprocess.Popen(
            ["make", "demo"],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    try:
        expected = steps[0][1].replace("8081", str(port))
        assert wait_for(lambda: expected in log.read_text(errors="replace"), 120), log.read_text(errors="replace")
        assert wait_for(lambda: (runtime / "flipedit-preview.sock").exists(), 30)
        for command, says in steps[1:]:
            argv = command.split()
            argv[0] = str(ROOT / argv[0])
            done = subprocess.run(argv, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
            assert says in done.stdout, f"{command}: {done.returncode}\n{done.stdout}\n{done.stderr}"
            assert done.returncode == 0, f"{command}: {done.returncode}\n{done.stdout}\n{done.stderr}"
    finally:
        os.killpg(demo.pid, signal.SIGINT)
        try:
            demo.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(demo.pid, signal.SIGKILL)
            demo.wait(10)
    assert sorted(p.name for p in runtime.iterdir()) == []  # the demo takes its socket, token and folder with it
