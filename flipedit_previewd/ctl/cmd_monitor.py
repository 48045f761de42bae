"""previewctl monitor: a live view (rich) on a terminal; one line (or one JSON object) per interval when not.

Exit 2 when no sample ever reached the daemon, else 0 (Ctrl-C included).
"""

from __future__ import annotations

import argparse
import json
import time
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from .arguments import format_args, number
from .context import EXIT_OK, EXIT_UNREACHABLE, Command, Env, client_for, wants_json
from .discovery import Unreachable
from .healthview import health_rows, proxy_text
from .safeout import as_dict, as_float
from .words import paint, show


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--interval",
        type=number(float, low=0.1, high=3600),
        default=1.0,
        metavar="SECONDS",
        help="seconds between updates, at least 0.1 (default 1)",
    )
    p.add_argument("--count", type=number(int, low=1), metavar="N", help="stop after N updates")
    format_args(p)


SPARK = " ▁▂▃▄▅▆▇█"


def sparkline(values: list[float]) -> str:
    if not values:
        return ""
    top = max(values) or 1.0
    return "".join(SPARK[min(len(SPARK) - 1, int(v / top * (len(SPARK) - 1)))] for v in values)


@dataclass
class MonitorState:
    restarts: int = 0
    last_pid: int | None = None
    p95: deque[float] = field(default_factory=lambda: deque(maxlen=60))
    unreachable_since: float | None = None

    def update(self, health: dict[str, Any] | None) -> None:
        if health is None:
            self.unreachable_since = self.unreachable_since or time.monotonic()
            return
        self.unreachable_since = None
        pid = health.get("pid")
        if self.last_pid is not None and pid != self.last_pid:
            self.restarts += 1
        self.last_pid = pid
        self.p95.append(as_float(as_dict(health.get("latency_ms")).get("p95")))


def monitor_line(health: dict[str, Any] | None, state: MonitorState, colour: bool = False) -> str:
    now = time.strftime("%H:%M:%S")
    if health is None:
        return f"{now} {paint('unreachable', colour)}, reconnecting (restarts seen {state.restarts})"
    lat = as_dict(health.get("latency_ms"))
    status = str(health.get("status", "-"))
    return (
        f"{now} {paint(f'{status:<10}', colour, status)} queue "
        f"{show(health.get('queue_size'))}/{show(health.get('queue_capacity'))} "
        f"in-flight {show(health.get('in_flight'))}/{show(health.get('capacity'))} rate "
        f"{show(health.get('rate_per_s'))}/s "
        f"p50 {show(lat.get('p50'))} p95 {show(lat.get('p95'))} p99 {show(lat.get('p99'))} ms "
        f"rejected/min {show(health.get('rejected_last_minute'))} restarts {state.restarts}"
        + (f" proxies {proxy_text(health)}" if as_dict(health.get("proxies")).get("in_progress") else "")
    )


def cmd_monitor(args: argparse.Namespace, env: Env) -> int:
    client = client_for(args, env)
    state = MonitorState()

    def poll() -> dict[str, Any] | None:
        try:
            health = client.health()
            answered[0] += 1
        except Unreachable:
            client.forget()
            health = None
        state.update(health)
        return health

    count = 0
    answered = [0]

    def outcome() -> int:
        """Non-zero when every sample failed: nothing was ever seen of the daemon."""
        return EXIT_UNREACHABLE if count and not answered[0] else EXIT_OK

    if not env.is_tty or wants_json(args):
        try:
            while args.count is None or count < args.count:
                health = poll()
                if wants_json(args):
                    env.out(
                        json.dumps(
                            {
                                "time": datetime.now().astimezone().isoformat(timespec="seconds"),
                                "reachable": health is not None,
                                "restarts_seen": state.restarts,
                                "health": health,
                            }
                        )
                    )
                else:
                    env.out(monitor_line(health, state, env.color))
                count += 1
                if args.count is None or count < args.count:
                    env.sleep(args.interval)
        except KeyboardInterrupt:
            pass
        return outcome()
    from rich.console import Console
    from rich.live import Live
    from rich.table import Table
    from rich.text import Text

    # No colour and no other styling without colour (NO_COLOR, TERM=dumb): rich's no_color keeps bold and italic.
    console = Console(
        file=env.stdout,
        force_terminal=True,
        color_system="auto" if env.color else None,
        highlight=False,
        width=env.width if env.width > 0 else None,
    )
    styles = {
        "ok": "green",
        "degraded": "yellow",
        "overloaded": "yellow",
        "stopping": "bold red",
        "unreachable": "bold red",
    }

    def view(health: dict[str, Any] | None) -> Any:
        table = Table(title=Text(f"flipedit-previewd at {client.shown}"), show_header=False, expand=False)
        if health is None:
            table.add_row(
                Text("daemon"),
                Text.assemble(
                    ("unreachable", styles["unreachable"]), f", reconnecting (restarts seen {state.restarts})"
                ),
            )
            return table
        for label, value in health_rows(health)[:6]:
            cell = Text(value)
            if label == "status":
                status = str(health.get("status", ""))
                cell.stylize(styles.get(status, ""), 0, len(status))
            table.add_row(Text(label), cell)
        table.add_row(Text("p95 trend"), Text(sparkline(list(state.p95))))
        proxies = as_dict(health.get("proxies"))
        if proxies.get("in_progress") or proxies.get("queued"):  # a progress bar while proxies are made
            table.add_row(Text("proxies"), Text(proxy_text(health)))
        table.add_row(Text("restarts"), Text(str(state.restarts), style="yellow" if state.restarts else ""))
        return table

    try:
        with Live(view(poll()), console=console, refresh_per_second=4, screen=False) as live:
            count += 1
            while args.count is None or count < args.count:
                env.sleep(args.interval)
                live.update(view(poll()))
                count += 1
    except KeyboardInterrupt:
        pass
    return outcome()


COMMAND = Command("monitor", "a live view; one line per interval when not on a terminal", add_arguments, cmd_monitor)
