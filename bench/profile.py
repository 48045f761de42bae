"""py-spy flame graphs of the daemon (main process and workers) under the overload and drag scenarios,
or under the random and scrub patterns on a real-footage scene (bench/footage.py, --footage NAME).

Not a test. Starts the daemon as bench/peers.py does (rendered-frame cache off, same scene), attaches
`py-spy record --subprocesses` to it for the length of one scenario, and writes
bench/results/profile-<scenario>.svg (plus a collapsed-stack text file for reading without a browser) and
prints the hottest frames per process. Load is printed with every run: the machine is shared.
  .venv/bin/python -m bench.profile [--scenario overload|drag|both] [--seconds 15]
  .venv/bin/python -m bench.profile --scenario random|scrub|footage --footage gop250-1080p [--seconds 20]
With a footage scene, the project is one clip of it filling the canvas, the client replays the pattern as
bench/peers.py does (one request in flight; scrub at the editor's pace), and the worker samples are also
sorted into shares by what the daemon was doing (decode, seek, demux, scale, JPEG encode, pipe, ...).
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

from bench import footage
from bench.harness import RESULTS, VENV, make_project, make_scene, uncached_daemon
from bench.load import overload as raw_overload
from bench.peers import drag, paced

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent

# What a worker's sample was doing, from the innermost Python frame that says (py-spy sees no native frames:
# time inside FFmpeg or libjpeg is charged to the Python line that called it). First match wins.
ACTIVITIES = (
    ("seek", ("_seek_time", "_seek_byte", "_seek ", ".seek (")),
    ("decode (packet.decode)", ("packet.decode", "_decoding (")),
    ("scale + rgb (reformat, to_image)", ("reformat", "to_image", ".picture (")),
    ("JPEG encode", ("_encode_tile", "JpegImagePlugin", "encode (flipedit_previewd/compositor")),
    ("paste / canvas", ("paste", "Image.new", "new (PIL")),
    ("open / probe", ("_open_container", "av.open", "_check_pixels")),
    ("pipe (send/recv)", ("multiprocessing/connection", "ForkingPickler", "_recv", "_send")),
)


def activities(collapsed: Path) -> tuple[dict[str, collections.Counter[str]], collections.Counter[str]]:
    """Per process (main / worker), samples by activity; and the worker samples by the leaf line."""
    shares: dict[str, collections.Counter[str]] = {"main": collections.Counter(), "workers": collections.Counter()}
    leaves: collections.Counter[str] = collections.Counter()
    for line in collapsed.read_text().splitlines():
        stack, _, samples = line.rpartition(" ")
        n = int(samples)
        frames = stack.split(";")
        who = "workers" if "child_main" in stack else "main"
        kind = "other"
        for frame in reversed(frames):
            hit = next((name for name, marks in ACTIVITIES if any(m in frame for m in marks)), None)
            if hit:
                kind = hit
                break
        shares[who][kind] += n
        if who == "workers":
            leaves[frames[-1]] += n
    return shares, leaves


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
    return subprocess.Popen(
        [
            str(VENV / "py-spy"),
            "record",
            "--subprocesses",
            "--nonblocking",
            "--rate",
            "100",
            "--duration",
            str(int(seconds)),
            "--format",
            fmt,
            "-o",
            str(out),
            "--pid",
            str(pid),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--scenario", choices=("overload", "drag", "both", "random", "scrub", "footage"), default="both"
    )
    parser.add_argument("--seconds", type=float, default=15)
    parser.add_argument("--label", default="", help="file name prefix, e.g. before-")
    parser.add_argument(
        "--footage", default="", help="a footage scene (bench/footage.py) for random/scrub/footage (both)"
    )
    args = parser.parse_args()
    if args.scenario in ("random", "scrub", "footage") and not args.footage:
        args.footage = "gop250-1080p"
    with tempfile.TemporaryDirectory() as tmp:
        if args.footage:
            clip = footage.SCENES[args.footage]
            db = footage.make_project(Path(tmp), footage.make(clip), clip.seconds)
        else:
            db = make_project(Path(tmp), make_scene(Path(tmp)))
        daemon = uncached_daemon(db)
        daemon.start()
        try:
            if args.footage:
                footage.check_served(daemon.url, footage.make(args.footage), 45)
            assert daemon.proc is not None
            scenarios = {"both": ("overload", "drag"), "footage": ("random", "scrub")}.get(
                args.scenario, (args.scenario,)
            )
            for scenario in scenarios:
                load = os.getloadavg()
                stem = f"profile-{args.label}{scenario}" + (f"-{args.footage}" if args.footage else "")
                svg, txt = RESULTS / f"{stem}.svg", Path(tmp) / f"{scenario}.txt"
                spies = [
                    record(daemon.proc.pid, args.seconds, svg, "flamegraph"),
                    record(daemon.proc.pid, args.seconds, txt, "raw"),
                ]
                time.sleep(1.0)
                if args.footage:
                    jobs = footage.pattern(scenario, footage.SCENES[args.footage].frames, 2000, seed=1)
                    result = paced(daemon.url, jobs, args.seconds - 2)
                    result = {
                        "latency_ms": result["latency_ms"],
                        "statuses": {"200": result["n"], "errors": result["errors"]},
                    }
                elif scenario == "overload":
                    frame = lambda n: f"/get_frame/{n % 240}?quality={80 + (n // 240) % 10}"  # noqa: E731
                    result = raw_overload(daemon.url, 400, args.seconds - 2, quiet=True, path=frame)
                else:
                    result = drag(daemon, db, args.seconds - 2, trials=30)
                for spy in spies:
                    spy.wait(timeout=args.seconds + 60)
                print(f"== {scenario}: load average before {load[0]:.2f} {load[1]:.2f}, after {os.getloadavg()[0]:.2f}")
                print(
                    {
                        k: v
                        for k, v in result.items()
                        if k in ("goodput_per_s", "latency_503_ms", "statuses", "settle_ms", "background_ms")
                    }
                )
                if txt.exists():
                    (RESULTS / f"{stem}.collapsed.txt").write_text(txt.read_text())
                    for name, share in top_frames(txt):
                        print(f"  {share:6.1%}  {name}")
                    if args.footage:
                        shares, leaves = activities(txt)
                        total = sum(shares["main"].values()) + sum(shares["workers"].values())
                        for who, counts in shares.items():
                            print(
                                f"  {who}: {sum(counts.values()) / max(total, 1):.1%} of all samples; by activity "
                                f"(share of {who}):"
                            )
                            for kind, n in counts.most_common():
                                print(f"    {n / max(sum(counts.values()), 1):6.1%}  {kind}")
                        print("  workers' hottest lines (self, share of worker samples):")
                        for leaf, n in leaves.most_common(10):
                            print(f"    {n / max(sum(shares['workers'].values()), 1):6.1%}  {leaf}")
        finally:
            daemon.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
