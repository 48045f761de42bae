"""previewctl's subcommands. Each takes (args, env) and returns an exit code or raises CtlError."""

from __future__ import annotations

import json
import os
import sqlite3
import stat
import subprocess
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import IO, Any
from urllib.parse import quote

from .http import DaemonClient, Unreachable
from .journal_read import BadTime, as_json, entries, event_of, number, open_reader, parse_time, short_line
from .safeout import as_float, as_int, clean, rich_text
from .stats import summarise

EXIT_OK, EXIT_PROBLEM, EXIT_UNREACHABLE, EXIT_USAGE = 0, 1, 2, 3
EDITOR_POOL_IDLE_S = 15
SERVICE, SOCKET = "flipedit-preview.service", "flipedit-preview.socket"


class CtlError(Exception):
    def __init__(self, message: str, hint: str, code: int = EXIT_PROBLEM) -> None:
        super().__init__(message)
        self.hint = hint
        self.code = code


@dataclass
class Env:
    stdout: IO[str]
    stderr: IO[str]
    environ: dict[str, str]
    is_tty: bool
    color: bool
    width: int = 100
    sleep: Any = field(default=time.sleep)

    def out(self, text: str = "") -> None:
        print(text, file=self.stdout, flush=True)


def client_for(args: Any, env: Env) -> DaemonClient:
    return DaemonClient(getattr(args, "url", None), env.environ, timeout=getattr(args, "timeout", 3.0),
                        warn=lambda text: print(text, file=env.stderr, flush=True))


def _health_or_exit(client: DaemonClient) -> dict[str, Any]:
    try:
        return client.health()
    except Unreachable as exc:
        raise CtlError(f"daemon unreachable ({exc})",
                       "start it with 'systemctl --user start flipedit-preview.socket' or pass --url", EXIT_UNREACHABLE) from None


def bar(used: Any, capacity: Any, width: int = 20) -> str:
    used, capacity = as_int(used), as_int(capacity)
    filled = 0 if capacity <= 0 else min(width, round(width * used / capacity))
    return "[" + "#" * filled + "." * (width - filled) + f"] {used}/{capacity}"


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def render_health(h: dict[str, Any]) -> list[str]:
    """Lines from a /health answer (strings already escaped by the client; shapes not trusted)."""
    lat = _dict(h.get("latency_ms"))
    counters = _dict(h.get("counters"))
    project = _dict(h.get("project"))
    lines = [
        f"status      {h['status']}   (pid {h.get('pid')}, up {h.get('uptime_s')} s, version {h.get('version')})",
        f"queue       {bar(h.get('queue_size', 0), h.get('queue_capacity', 0))}",
        f"in flight   {h.get('in_flight', h.get('active_requests'))}/{h.get('capacity', h.get('max_concurrent'))} workers"
        f"   connections {h.get('connections')}/{h.get('max_connections')}",
        f"rate        {h.get('rate_per_s')} frames/s   rejected last minute {h.get('rejected_last_minute')}",
        f"latency ms  p50 {lat.get('p50')}  p95 {lat.get('p95')}  p99 {lat.get('p99')}  ({lat.get('samples')} samples)",
        "counters    " + "  ".join(f"{k}={v}" for k, v in sorted(counters.items())),
        f"project     {project.get('path') or '(none)'} [{project.get('state')}] {project.get('error') or ''}".rstrip(),
    ]
    workers = h.get("workers")
    for worker in (workers if isinstance(workers, list) else [])[:64]:
        worker = _dict(worker)
        lines.append(f"worker {worker.get('index')}    pid {worker.get('pid')} {worker.get('state')}"
                     + (f" frame {worker.get('frame')}" if worker.get("frame") is not None else "")
                     + f" for {worker.get('since_s')} s, {worker.get('completed')} done")
    roots = h.get("media_roots")
    if isinstance(roots, list):
        lines.append("media roots " + (", ".join(str(r) for r in roots[:20]) or "(none: no media can be read)"))
    return lines


def cmd_health(args: Any, env: Env) -> int:
    client = client_for(args, env)
    health = _health_or_exit(client)
    if args.json:
        env.out(json.dumps(health, indent=2))
    else:
        env.out(f"daemon      {client.shown}")
        for line in render_health(health):
            env.out(line)
    return EXIT_OK if health.get("status") == "ok" else EXIT_PROBLEM


# --- systemd ----------------------------------------------------------------------------------

def systemctl_scope(environ: dict[str, str]) -> list[str]:
    """``--user`` when the user manager knows the unit, else the system manager."""
    for scope in (["--user"], []):
        try:
            out = subprocess.run(["systemctl", *scope, "show", SERVICE, "-p", "LoadState"], capture_output=True, text=True,
                                 timeout=5, env={**os.environ, **environ}).stdout
        except (OSError, subprocess.TimeoutExpired):
            continue
        if "LoadState=loaded" in out:
            return scope
    raise CtlError(f"no {SERVICE} unit found for this user or the system",
                   "install the units (see README 'Install') and run 'systemctl --user daemon-reload'")


def unit_props(scope: list[str], unit: str, props: list[str], environ: dict[str, str]) -> dict[str, str]:
    out = subprocess.run(["systemctl", *scope, "show", unit, *(f"-p{p}" for p in props)], capture_output=True, text=True,
                         timeout=5, env={**os.environ, **environ}).stdout
    return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)


SERVICE_PROPS = ["ActiveState", "SubState", "MainPID", "NRestarts", "Result", "StatusText", "ActiveEnterTimestamp",
                 "InactiveEnterTimestamp", "ExecMainStatus", "WatchdogUSec", "LogRateLimitIntervalUSec"]


def cmd_status(args: Any, env: Env) -> int:
    scope = systemctl_scope(env.environ)
    service = unit_props(scope, SERVICE, SERVICE_PROPS, env.environ)
    sock = unit_props(scope, SOCKET, ["ActiveState", "SubState", "Listen"], env.environ)
    since = service.get("ActiveEnterTimestamp") if service.get("ActiveState") == "active" else service.get("InactiveEnterTimestamp")
    env.out(f"unit        {SERVICE} ({'user' if scope else 'system'} manager)")
    env.out(f"service     {service.get('ActiveState')} ({service.get('SubState')}) since {since or '-'}   MainPID {service.get('MainPID')}")
    env.out(f"restarts    {service.get('NRestarts')}   last result {service.get('Result')}   exit status {service.get('ExecMainStatus')}")
    env.out(f"socket      {sock.get('ActiveState')} ({sock.get('SubState')})   {sock.get('Listen', '')}")
    if service.get("StatusText"):
        env.out(f"status text {clean(service['StatusText'])}")
    client = client_for(args, env)
    try:
        health = client.health()
    except Unreachable as exc:
        env.out(f"health      unreachable ({exc})")
        return EXIT_UNREACHABLE if sock.get("ActiveState") != "active" else EXIT_PROBLEM
    env.out(f"health      {health['status']} via {client.shown}")
    ok = service.get("ActiveState") == "active" and health.get("status") == "ok"
    return EXIT_OK if ok else EXIT_PROBLEM


# --- journal ----------------------------------------------------------------------------------

def _window(args: Any) -> tuple[datetime | None, datetime | None]:
    try:
        since = parse_time(args.since) if getattr(args, "since", None) else None
        until = parse_time(args.until) if getattr(args, "until", None) else None
    except BadTime as exc:
        raise CtlError(str(exc), "see journalctl(1) 'SPECIFYING TIMESTAMPS' for the accepted forms", EXIT_USAGE) from None
    return since, until


def _reader(args: Any) -> Any:
    try:
        return open_reader(args.directory, args.file)
    except OSError as exc:
        raise CtlError(f"cannot open the journal: {exc}", "check --directory/--file, or run as a user in the systemd-journal group") from None


def _matches(args: Any, entry: dict[str, Any]) -> bool:
    event = event_of(entry)
    if args.event and event != args.event:
        return False
    if args.outcome and str(entry.get("OUTCOME")) != args.outcome:
        return False
    if args.request_id and str(entry.get("REQUEST_ID")) != args.request_id:
        return False
    if args.slower_than is not None:
        total = number(entry, "TOTAL_MS")
        if total is None or total <= args.slower_than:
            return False
    return True


def cmd_logs(args: Any, env: Env) -> int:
    since, until = _window(args)
    reader = _reader(args)
    selected = [e for e in entries(reader, since, until) if _matches(args, e)]
    if args.lines is not None:
        selected = selected[-args.lines:] if args.lines > 0 else []
    for entry in selected:
        env.out(json.dumps(as_json(entry)) if args.output == "json" else short_line(entry))
    if args.follow:
        reader.seek_tail()
        reader.get_previous()
        try:
            while True:
                reader.wait(1.0)
                for entry in reader:
                    if _matches(args, entry):
                        env.out(json.dumps(as_json(entry)) if args.output == "json" else short_line(entry))
        except KeyboardInterrupt:
            return EXIT_OK
    return EXIT_OK


def cmd_stats(args: Any, env: Env) -> int:
    since, until = _window(args)
    summary = summarise(entries(_reader(args), since, until))
    if args.json:
        env.out(json.dumps(summary, indent=2))
        return EXIT_OK
    env.out(f"window      {args.since or 'beginning'} .. {args.until or 'now'}")
    env.out(f"requests    {summary['requests']}   " + "  ".join(f"{clean(k, 40)}={v}" for k, v in summary["outcomes"].items()))
    for name in ("queue_ms", "render_ms", "total_ms"):
        p = summary[name]
        env.out(f"{name:<11} p50 {p['p50']}  p95 {p['p95']}  p99 {p['p99']}  (n={p['count']})")
    worst = summary["worst_minute"]
    if worst:
        env.out(f"worst min   {worst['minute']}: {worst['not_served']} of {worst['requests']} not served")
    env.out(f"overloads   {len(summary['overload_periods'])}" + "".join(
        f"\n            {o['began']} .. {o['ended'] or 'still'}" for o in summary["overload_periods"]))
    env.out(f"restarts    {summary['restarts']}   watchdog withheld {summary['watchdog_withheld']}   workers hung {summary['workers_hung']}")
    if summary.get("ignored_fields"):
        env.out(f"ignored     {summary['ignored_fields']} numeric fields that were not finite numbers")
    return EXIT_OK


# --- render -----------------------------------------------------------------------------------

def cmd_render(args: Any, env: Env) -> int:
    if args.frame < 0:
        raise CtlError(f"frame must not be negative: {args.frame}", "frames count from 0", EXIT_USAGE)
    client = client_for(args, env)
    query = "&".join(f"{k}={v}" for k, v in (("width", args.width), ("height", args.height), ("quality", args.quality)) if v)
    try:
        response, ms = client.timed_get(f"/get_frame/{args.frame}" + (f"?{query}" if query else ""), timeout=args.timeout)
    except Unreachable as exc:
        raise CtlError(f"daemon unreachable ({exc})", "check 'previewctl status'", EXIT_UNREACHABLE) from None
    if response.status_code != 200:
        raise CtlError(f"frame {args.frame}: HTTP {response.status_code}: {clean(response.text, 200)}",
                       "see 'previewctl logs -n 20' for the reason")
    if not response.content.startswith((b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n")):
        raise CtlError(f"frame {args.frame}: the answer is not a JPEG or PNG image ({clean(response.headers.get('Content-Type'), 80)})",
                       "check that --url points at flipedit-previewd")
    with open(args.output, "wb") as handle:
        handle.write(response.content)
    headers = response.headers
    env.out(f"frame {args.frame} -> {clean(args.output)}: {len(response.content)} bytes in {ms:.1f} ms "
            f"(cache {clean(headers.get('X-Cache', '?'), 20)}, render {clean(headers.get('X-Render-Ms', '-'), 20)} ms, "
            f"queue {clean(headers.get('X-Queue-Ms', '-'), 20)} ms)")
    return EXIT_OK


# --- doctor -----------------------------------------------------------------------------------

@dataclass
class Finding:
    check: str
    ok: bool
    detail: str
    fix: str = ""


def doctor_findings(args: Any, env: Env) -> list[Finding]:
    findings: list[Finding] = []
    scope: list[str] | None
    try:
        scope = systemctl_scope(env.environ)
    except CtlError:
        scope = None
    if scope is None:
        findings.append(Finding("units installed", False, f"no {SERVICE} for this user or the system",
                                "install the units and run 'systemctl --user daemon-reload'"))
    else:
        sock = unit_props(scope, SOCKET, ["ActiveState", "SubState", "ActiveEnterTimestampMonotonic"], env.environ)
        service = unit_props(scope, SERVICE, SERVICE_PROPS, env.environ)
        user = "--user " if scope else ""
        findings.append(Finding("socket listening", sock.get("ActiveState") == "active",
                                f"{SOCKET} is {sock.get('ActiveState')} ({sock.get('SubState')})",
                                f"systemctl {user}enable --now {SOCKET}"))
        failed = service.get("ActiveState") == "failed"
        findings.append(Finding("service not failed", not failed,
                                f"{SERVICE} is {service.get('ActiveState')} (result {service.get('Result')})",
                                f"journalctl {user}-u {SERVICE} -n 50; then systemctl {user}reset-failed {SERVICE} && systemctl {user}start {SOCKET}"))
        limit = service.get("LogRateLimitIntervalUSec", "")
        findings.append(Finding("journald rate limit off", limit in ("0", ""),
                                f"LogRateLimitIntervalUSec={limit}", "keep LogRateLimitIntervalSec=0 in the unit, or entries will be dropped"))
    window = datetime.now().astimezone() - timedelta(hours=1)
    if scope is not None:
        # Only since the socket last started listening: an operator's deliberate restart starts afresh.
        entered = int(sock.get("ActiveEnterTimestampMonotonic") or 0)
        if entered:
            ago = time.clock_gettime(time.CLOCK_MONOTONIC) - entered / 1e6
            window = max(window, datetime.now().astimezone() - timedelta(seconds=ago))
    try:
        recent = summarise(entries(open_reader(args.directory, args.file), window, None))
        # systemd's own count covers restarts whose new daemon has not logged yet (or a frozen daemon that could not log).
        restarts = max(recent["restarts"], int(service.get("NRestarts") or 0) if scope is not None else 0)
        findings.append(Finding("no watchdog or restarts in the last hour", recent["watchdog_withheld"] == 0 and restarts == 0,
                                f"{restarts} restarts, {recent['watchdog_withheld']} watchdog heartbeats withheld, "
                                f"{recent['workers_hung']} workers hung",
                                "previewctl logs --since '1 hour ago' --event watchdog_withheld; look for hung media (FIFOs, network mounts)"))
    except OSError as exc:
        findings.append(Finding("journal readable", False, str(exc), "run as a member of the systemd-journal group"))
    client = client_for(args, env)
    try:
        health = client.health()
    except Unreachable as exc:
        findings.append(Finding("daemon answers /health", False, str(exc), f"systemctl --user start {SOCKET}; previewctl status"))
        return findings
    findings.append(Finding("daemon answers /health", True, f"{health['status']} via {client.shown}"))
    rejected = as_int(health.get("rejected_last_minute", 0))
    queue, capacity = as_int(health.get("queue_size", 0)), as_int(health.get("queue_capacity", 0))
    findings.append(Finding("no overload", rejected == 0 and (capacity == 0 or queue < capacity),
                            f"{rejected} rejected in the last minute, queue {queue}/{capacity}",
                            "raise workers or queue_size in previewd.toml, or lower the editor's request rate"))
    keepalive = as_float(health.get("keepalive_timeout_s", 0))
    findings.append(Finding("keep-alive outlives the editor's pool", keepalive > EDITOR_POOL_IDLE_S,
                            f"keepalive_timeout {keepalive:g} s vs the editor's {EDITOR_POOL_IDLE_S} s idle pool",
                            f"set keepalive_timeout above {EDITOR_POOL_IDLE_S} (default 20)"))
    project = _dict(health.get("project"))
    path = project.get("path") or ""
    readable, why = _db_readable(path if isinstance(path, str) else "", getattr(args, "timeout", 3.0))
    findings.append(Finding("project database readable and fresh", project.get("state") == "ok" and readable,
                            f"{path or '(no project)'}: daemon says {project.get('state')} {project.get('error') or ''}; {why}".strip(),
                            "check the path (--project or the metadata database) and file permissions"))
    try:
        timeline = client.get("/debug/timeline").json()
        clips = timeline.get("clips", []) if isinstance(timeline, dict) else []
        paths = {c.get("source_path") for c in (clips if isinstance(clips, list) else [])[:10000] if isinstance(c, dict)}
        missing = sorted(clean(p) for p in paths if isinstance(p, str) and "\x00" not in p and not os.path.lexists(p))
    except (Unreachable, ValueError, KeyError, AttributeError):
        missing = ["(could not read /debug/timeline)"]
    findings.append(Finding("all media present", not missing, f"{len(missing)} missing: {', '.join(missing[:5])}" if missing else "every clip's source exists",
                            "relink the media in the editor, or restore the files"))
    roots = health.get("media_roots")
    skipped = health.get("media_roots_skipped")
    if isinstance(roots, list):
        findings.append(Finding("media roots", bool(roots) and not skipped,
                                "effective: " + (", ".join(str(r) for r in roots[:20]) or "(none)")
                                + ("; skipped: " + ", ".join(str(r) for r in skipped[:20]) if isinstance(skipped, list) and skipped else ""),
                                "keep media in project folders, or set allowed_roots to specific directories (never / or ~)"))
    return findings


def _db_readable(path: str, timeout: float = 3.0) -> tuple[bool, str]:
    """Read-only, and only a regular file, within ``timeout``: the path comes from the server.

    The path goes into a quoted ``file:`` URI with ``mode=ro`` (so '?mode=rwc' in a name is just a
    name), a FIFO or device is never opened, and a database that hangs is given up on.
    """
    if not path:
        return False, "no project configured"
    if "\x00" in path or not os.path.isabs(path):
        return False, "not an absolute path"
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):
            return False, "not a regular file"
    except OSError as exc:
        return False, f"cannot stat it: {exc.strerror}"
    result: list[tuple[bool, str]] = []

    def probe() -> None:
        try:
            conn = sqlite3.connect(f"file:{quote(path, safe='/')}?mode=ro", uri=True, timeout=0.5)
            try:
                conn.execute("SELECT count(*) FROM clips").fetchone()
            finally:
                conn.close()
        except sqlite3.Error as exc:
            result.append((False, f"cannot read it: {clean(exc, 200)}"))
            return
        result.append((True, "readable"))

    worker = threading.Thread(target=probe, daemon=True)
    worker.start()
    worker.join(timeout)
    return result[0] if result else (False, f"no answer within {timeout:g} s")


def cmd_doctor(args: Any, env: Env) -> int:
    findings = doctor_findings(args, env)
    for f in findings:
        mark = "ok  " if f.ok else "FAIL"
        env.out(f"[{mark}] {f.check}: {f.detail}")
        if not f.ok and f.fix:
            env.out(f"       fix: {f.fix}")
    failed = sum(1 for f in findings if not f.ok)
    env.out(f"{len(findings) - failed} passed, {failed} failed")
    return EXIT_OK if failed == 0 else EXIT_PROBLEM


# --- monitor ----------------------------------------------------------------------------------

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
        self.p95.append(as_float(_dict(health.get("latency_ms")).get("p95")))


def monitor_line(health: dict[str, Any] | None, state: MonitorState) -> str:
    now = time.strftime("%H:%M:%S")
    if health is None:
        return f"{now} unreachable, reconnecting (restarts seen {state.restarts})"
    lat = _dict(health.get("latency_ms"))
    return (f"{now} {health['status']:<10} queue {health.get('queue_size')}/{health.get('queue_capacity')} "
            f"in-flight {health.get('in_flight')}/{health.get('capacity')} rate {health.get('rate_per_s')}/s "
            f"p50 {lat.get('p50')} p95 {lat.get('p95')} p99 {lat.get('p99')} ms rejected/min {health.get('rejected_last_minute')} "
            f"restarts {state.restarts}")


def cmd_monitor(args: Any, env: Env) -> int:
    client = client_for(args, env)
    state = MonitorState()

    def poll() -> dict[str, Any] | None:
        try:
            health = client.health()
        except Unreachable:
            client.forget()
            health = None
        state.update(health)
        return health

    count = 0
    if not env.is_tty:
        try:
            while args.count is None or count < args.count:
                env.out(monitor_line(poll(), state))
                count += 1
                if args.count is None or count < args.count:
                    env.sleep(args.interval)
        except KeyboardInterrupt:
            pass
        return EXIT_OK
    from rich.console import Console
    from rich.live import Live

    console = Console(file=env.stdout, no_color=not env.color)

    def view(health: dict[str, Any] | None) -> Any:
        from rich.table import Table

        table = Table(title=rich_text(f"flipedit-previewd at {client.shown}"), show_header=False, expand=False)
        if health is None:
            table.add_row("daemon", f"[red]unreachable[/red], reconnecting (restarts seen {state.restarts})")
            return table
        for line in render_health(health)[:6]:
            key, _, value = line.partition(" ")
            table.add_row(rich_text(key), rich_text(value.strip()))
        table.add_row("p95 trend", sparkline(list(state.p95)))
        table.add_row("restarts", str(state.restarts))
        return table

    try:
        with Live(view(poll()), console=console, refresh_per_second=4, screen=False) as live:
            while args.count is None or count < args.count:
                env.sleep(args.interval)
                live.update(view(poll()))
                count += 1
    except KeyboardInterrupt:
        pass
    return EXIT_OK
