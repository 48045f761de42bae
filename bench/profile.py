"""py-spy flame graphs of the daemon (main process and workers) under the overload and drag scenarios.

Not a test. Starts the daemon as bench/peers.py does (rendered-frame cache off, same scene), attaches
`py-spy record --subprocesses` to it for the length of one scenario, and writes
bench/profile-<scenario>.svg (plus a collapsed-stack text file for reading without a browser) and
prints the hottest frames per process. Load is printed with every run: the machine is shared.
  .venv/bin/python bench/profile.py [--scenario overload|drag|both] [--seconds 15]
"""

from __future__ import annotations

import argparse
import collections
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
from load import overload as raw_overload  # noqa: E402
from peers import VENV, Server, drag, make_project  # noqa: E402
from render import make_scene  # noqa: E402


def top_frames(collapsed: Path, count: int = 12) -> list[tuple[str, float]]:
    """Self time per leaf function, as a share of all samples, from py-spy's collapsed output."""
    leaves: collections.Counter[str] = collections.Counter()
    total = 0
    for line in collapsed.read_text().splitlines():
        stack, _, samples = line.rpartition(" ")
        n = int(samples)
        total += n
        leaves[stack.split(";")[-1]] += n
    return [(name, n / max(total, 1)) for name, n in leaves.most_common(count)]


def record(pid: int, seconds: float, out: Path, fmt: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen([str(VENV / "py-spy"), "record", "--subprocesses", "--nonblocking", "--rate", "100",
                             "--duration", str(int(seconds)), "--format", fmt, "-o", str(out), "--pid", str(pid)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scenario", choices=("overload", "drag", "both"), default="both")
    parser.add_argument("--seconds", type=float, default=15)
    parser.add_argument("--label", default="", help="file name prefix, e.g. before-")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        scene = make_scene(Path(tmp))
        db = make_project(Path(tmp), scene)
        daemon = Server("daemon", [str(VENV / "flipedit-previewd"), "--project", str(db), "--listen", "127.0.0.1:{port}",
                                   "--frame-cache-bytes", "0"], {"XDG_CONFIG_HOME": str(db.parent)})
        daemon.start()
        try:
            assert daemon.proc is not None
            for scenario in ("overload", "drag") if args.scenario == "both" else (args.scenario,):
                load = os.getloadavg()
                svg, txt = HERE / f"profile-{args.label}{scenario}.svg", Path(tmp) / f"{scenario}.txt"
                spies = [record(daemon.proc.pid, args.seconds, svg, "flamegraph"),
                         record(daemon.proc.pid, args.seconds, txt, "raw")]
                time.sleep(1.0)
                if scenario == "overload":
                    frame = lambda n: f"/get_frame/{n % 240}?quality={80 + (n // 240) % 10}"  # noqa: E731
                    result = raw_overload(daemon.url, 400, args.seconds - 2, quiet=True, path=frame)
                else:
                    result = drag(daemon, db, args.seconds - 2, trials=30)
                for spy in spies:
                    spy.wait(timeout=args.seconds + 60)
                print(f"== {scenario}: load average before {load[0]:.2f} {load[1]:.2f}, after {os.getloadavg()[0]:.2f}")
                print({k: v for k, v in result.items() if k in ("goodput_per_s", "latency_503_ms", "statuses", "settle_ms", "background_ms")})
                if txt.exists():
                    (HERE / f"profile-{args.label}{scenario}.collapsed.txt").write_text(txt.read_text())
                    for name, share in top_frames(txt):
                        print(f"  {share:6.1%}  {name}")
        finally:
            daemon.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
