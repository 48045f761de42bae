"""previewctl's subcommands. Each takes (args, env) and returns an exit code or raises CtlError."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import stat
import subprocess
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import IO, Any

from flipedit_previewd.common.readonlydb import open_readonly

from .discovery import DaemonClient, TimedOut, Unreachable
from .journal_read import BadTime, as_json, entries, event_of, number, open_reader, parse_time, short_line
from .restarts import JOURNALCTL_USER, classify, is_manager_entry, open_unit_reader, verdict
from .running import Running, how_run, pinned_by
from .safeout import as_float, as_int, clean
from .stats import pending_counts, summarise
from .verify import daemon_problem
from .words import duration, fit, journal_places, paint, pid1, show

EXIT_OK, EXIT_PROBLEM, EXIT_UNREACHABLE, EXIT_USAGE = 0, 1, 2, 3
EDITOR_POOL_IDLE_S = 15
MEDIA_PROBLEM_WINDOW_S = 600  # doctor fails on a media problem met this recently (a fixed file stops being met)
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
    printed: bool = False  # anything on stdout yet (the funnel's JSON error document only on an empty stdout)

    def out(self, text: str = "") -> None:
        self.printed = True
        print(text, file=self.stdout, flush=True)

    @property
    def columns(self) -> int:
        """80 columns, the convention (fewer on a narrower terminal)."""
        return min(80, self.width) if self.is_tty and self.width > 20 else 80

    def say(self, text: str, indent: int = 12) -> None:
        """A human line, wrapped within ``columns`` (continuation lines indented under the value)."""
        for line in fit(text, indent, self.columns):
            self.out(line)

    def paint(self, text: str, word: str | None = None) -> str:
        return paint(text, self.color, word)


def wants_json(args: Any) -> bool:
    return getattr(args, "output", None) == "json"


def client_for(args: Any, env: Env) -> DaemonClient:
    return DaemonClient(getattr(args, "url", None), env.environ, timeout=getattr(args, "timeout", 3.0),
                        warn=lambda text: print(text, file=env.stderr, flush=True))


def unreachable_error(exc: Unreachable, timeout: float) -> CtlError:
    """A timeout is a timeout (the daemon may well run, busy or far); anything else: it is not there."""
    if isinstance(exc, TimedOut):
        return CtlError(f"the daemon did not answer within --timeout {timeout:g} s ({exc})",
                        "raise --timeout; 'previewctl monitor' shows whether it is busy", EXIT_UNREACHABLE)
    return CtlError(f"daemon unreachable ({exc})",
                    "start it ('systemctl --user start flipedit-preview.socket', or by hand: 'make demo' or "
                    "'flipedit-previewd --listen HOST:PORT') or pass --url", EXIT_UNREACHABLE)


def _health_or_exit(client: DaemonClient) -> dict[str, Any]:
    try:
        return client.health()
    except Unreachable as exc:
        raise unreachable_error(exc, client.timeout) from None


def bar(used: Any, capacity: Any, width: int = 20) -> str:
    used, capacity = as_int(used), as_int(capacity)
    filled = 0 if capacity <= 0 else min(width, round(width * used / capacity))
    return "[" + "#" * filled + "." * (width - filled) + f"] {used}/{capacity}"


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def megabytes(value: Any) -> str:
    return f"{as_int(value) / 1e6:.0f} MB" if as_int(value) < 10**9 else f"{as_int(value) / 1e9:.1f} GB"


def proxy_text(h: dict[str, Any]) -> str:
    """/health's "proxies" on one line: made, the one being made with a progress bar, queued, disk use."""
    p = _dict(h.get("proxies"))
    if not p:
        return "-"
    if not p.get("enabled"):
        return "off (proxies = false, or the store could not be used)"
    current = _dict(p.get("in_progress"))
    making = ""
    if current:
        done, total = as_int(current.get("frames_done")), as_int(current.get("frames_total"))
        making = f"making {clean(os.path.basename(str(current.get('source', ''))), 60)} {bar(done, total, 20)}, "
    failed = f", {show(p.get('failed'))} failed" if as_int(p.get("failed")) else ""
    stored = f" ({show(p.get('stored'))} kept)" if "stored" in p and as_int(p.get("stored")) != as_int(p.get("made")) else ""
    return (f"{show(p.get('made'))} made{stored}, {making}{show(p.get('queued'))} queued{failed}; "
            f"disk {megabytes(p.get('disk_bytes'))} of {megabytes(p.get('budget_bytes'))}")


def health_rows(h: dict[str, Any], colour: bool = False, running: Running | None = None) -> list[tuple[str, str]]:
    """(label, value) pairs: the health view's lines, and monitor's table rows (whole labels)."""
    lat = _dict(h.get("latency_ms"))
    counters = _dict(h.get("counters"))
    project = _dict(h.get("project"))
    status = str(h.get("status", "-"))
    rows = [
        ("status", f"{paint(status, colour)}   (pid {show(h.get('pid'))}, up {duration(h.get('uptime_s'))}, version {show(h.get('version'))})"),
        ("queue", bar(as_int(h.get("queue_size")), as_int(h.get("queue_capacity")))),
        ("in flight", f"{show(h.get('in_flight', h.get('active_requests')))}/{show(h.get('capacity', h.get('max_concurrent')))} workers"
                      f"   connections {show(h.get('connections'))}/{show(h.get('max_connections'))}"),
        ("rate", f"{show(h.get('rate_per_s'))} frames/s   rejected last minute {show(h.get('rejected_last_minute'))}"),
        ("latency", f"p50 {show(lat.get('p50'), 'ms')}  p95 {show(lat.get('p95'), 'ms')}  p99 {show(lat.get('p99'), 'ms')}"
                    f"  ({show(lat.get('samples'))} samples)" if lat.get("samples") else "no renders yet"),
        ("counters", "  ".join(f"{k}={show(v)}" for k, v in sorted(counters.items())) or "-"),
        ("project", f"{project.get('path') or '(none)'} [{show(project.get('state'))}] {project.get('error') or ''}".rstrip()),
        ("proxies", proxy_text(h)),
    ]
    workers = h.get("workers")
    for worker in (workers if isinstance(workers, list) else [])[:64]:
        worker = _dict(worker)
        frame = f" frame {worker['frame']}" if worker.get("frame") is not None else ""
        rows.append((f"worker {show(worker.get('index'))}", f"pid {show(worker.get('pid'))} {paint(str(worker.get('state', '-')), colour)}"
                     f"{frame} for {duration(worker.get('since_s'))}, {show(worker.get('completed'))} done"))
    roots = h.get("media_roots")
    if isinstance(roots, list):
        rows.append(("media roots", ", ".join(str(r) for r in roots[:20]) or "(none: no media can be read)"))
    rejected = _dict(h.get("config_error"))
    if rejected:  # a reload's configuration could not be used: the old one runs, a restart would fail (issue 26)
        rows.append(("config", f"{paint('rejected on reload', colour)}: {clean(str(rejected.get('message')))}"))
    pending = h.get("restart_pending")
    if isinstance(pending, list) and pending:
        # A reload kept these settings' running values: the configuration says otherwise until a restart.
        rows.append(("restart", f"{paint('pending', colour)} for {', '.join(show(p) for p in pending[:20])}: "
                                "the configuration changed them, a reload cannot; "
                                + (running or Running("unknown")).restart_advice()))
    return rows


def render_health(h: dict[str, Any], colour: bool = False, running: Running | None = None, columns: int = 80) -> list[str]:
    return [line for label, value in health_rows(h, colour, running) for line in fit(f"{label:<11} {value}", 12, columns)]


def cmd_health(args: Any, env: Env) -> int:
    client = client_for(args, env)
    try:
        health = client.health()
    except Unreachable as exc:
        error = unreachable_error(exc, client.timeout)
        if wants_json(args):  # the same document shape as when it answers: a status, and why
            env.out(json.dumps({"status": "unreachable", "daemon": client.shown, "error": clean(exc)}, indent=2))
        raise error from None
    if wants_json(args):
        env.out(json.dumps(health, indent=2))
    else:
        env.out(f"daemon      {client.shown}")
        for line in render_health(health, env.color, how_run(health.get("pid")), env.columns):
            env.out(line)
    return EXIT_OK if health.get("status") == "ok" else EXIT_PROBLEM


# --- systemd ----------------------------------------------------------------------------------

def _systemctl(scope: list[str], args: list[str], environ: dict[str, str]) -> subprocess.CompletedProcess[str] | None:
    try:
        return subprocess.run(["systemctl", *scope, *args], capture_output=True, text=True, timeout=5, env={**os.environ, **environ})
    except (OSError, subprocess.TimeoutExpired):
        return None


def find_scope(environ: dict[str, str]) -> tuple[list[str] | None, bool]:
    """(the scope whose manager knows the unit, or None; whether any systemd manager answered at all)."""
    any_manager = False
    for scope in (["--user"], []):
        done = _systemctl(scope, ["show", SERVICE, "-p", "LoadState"], environ)
        if done is None or done.returncode != 0:
            continue
        any_manager = True
        if "LoadState=loaded" in done.stdout:
            return scope, True
    return None, any_manager


def systemctl_scope(environ: dict[str, str]) -> list[str]:
    """``--user`` when the user manager knows the unit, else the system manager."""
    scope, _ = find_scope(environ)
    if scope is None:
        raise CtlError(f"no {SERVICE} unit found for this user or the system",
                       "install the units (see README, 'Install') and run 'systemctl --user daemon-reload'")
    return scope


def no_manager_reason() -> str:
    return f"no systemd manager answers here (PID 1 is {pid1()})"


def unit_props(scope: list[str], unit: str, props: list[str], environ: dict[str, str]) -> dict[str, str]:
    out = subprocess.run(["systemctl", *scope, "show", unit, *(f"-p{p}" for p in props)], capture_output=True, text=True,
                         timeout=5, env={**os.environ, **environ}).stdout
    return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)


SERVICE_PROPS = ["ActiveState", "SubState", "MainPID", "NRestarts", "Result", "StatusText", "ActiveEnterTimestamp",
                 "InactiveEnterTimestamp", "ExecMainStatus", "WatchdogUSec", "LogRateLimitIntervalUSec"]


def cmd_status(args: Any, env: Env) -> int:
    scope, any_manager = find_scope(env.environ)
    report: dict[str, Any] = {"manager": None, "service": None, "socket": None, "health": None, "daemon": None}
    lines: list[str] = []
    if scope is None:
        why = no_manager_reason() if not any_manager else f"no {SERVICE} unit for this user or the system"
        lines.append(f"systemd     {env.paint('n/a')}: {why}; a daemon run by hand is shown by its health alone")
        report["manager"] = "none" if not any_manager else "no unit"
        sock: dict[str, str] = {}
        service: dict[str, str] = {}
    else:
        service = unit_props(scope, SERVICE, SERVICE_PROPS, env.environ)
        sock = unit_props(scope, SOCKET, ["ActiveState", "SubState", "Listen"], env.environ)
        report.update(manager="user" if scope else "system", service=service, socket=sock)
        since = service.get("ActiveEnterTimestamp") if service.get("ActiveState") == "active" else service.get("InactiveEnterTimestamp")
        state = service.get("ActiveState") or "-"
        lines.append(f"unit        {SERVICE} ({'user' if scope else 'system'} manager)")
        lines.append(f"service     {env.paint(state)} ({show(service.get('SubState'))}) since {since or '-'}   MainPID {show(service.get('MainPID'))}")
        lines.append(f"restarts    {show(service.get('NRestarts'))}   last result {show(service.get('Result'))}   "
                     f"exit status {show(service.get('ExecMainStatus'))}")
        lines.append(f"socket      {env.paint(sock.get('ActiveState') or '-')} ({show(sock.get('SubState'))})   {sock.get('Listen', '')}".rstrip())
        if service.get("StatusText"):
            lines.append(f"status text {clean(service['StatusText'])}")
    client = client_for(args, env)
    code = EXIT_OK
    try:
        health = client.health()
    except Unreachable as exc:
        health = None
        lines.append(f"health      {env.paint('timeout' if isinstance(exc, TimedOut) else 'unreachable')} ({exc})")
        code = EXIT_UNREACHABLE if scope is None or sock.get("ActiveState") != "active" else EXIT_PROBLEM
    if health is not None:
        report.update(health=health, daemon=client.shown)
        lines.append(f"health      {env.paint(str(health.get('status', '-')))} via {client.shown}   pid {show(health.get('pid'))}, "
                     f"up {duration(health.get('uptime_s'))}")
        lines.append(project_line(health.get("project") or {}, how_run(health.get("pid"))))
        lines.append(f"proxies     {proxy_text(health)}")
        ok = (scope is None or service.get("ActiveState") == "active") and health.get("status") == "ok"
        code = EXIT_OK if ok else EXIT_PROBLEM
    if wants_json(args):
        env.out(json.dumps(report, indent=2))
    else:
        for line in lines:
            env.say(line)
    return code


def project_line(project: dict[str, Any], running: Running | None = None) -> str:
    """The project served and, unless pinned, the editor's list it follows and the last switch."""
    line = f"project     {project.get('path') or '(none)'} ({project.get('state', '?')})"
    following = project.get("following")
    if not following:
        return line + ", " + pinned_by(running) if project.get("path") else line
    line += f", following {following.get('metadata_db')}: {following.get('switches', 0)} switches"
    if following.get("switched_at"):
        when = datetime.fromtimestamp(float(following["switched_at"])).strftime("%Y-%m-%d %H:%M:%S")
        line += f", last at {when} from {following.get('previous') or '(none)'}"
    return line


# --- journal ----------------------------------------------------------------------------------

def _window(args: Any) -> tuple[datetime | None, datetime | None]:
    try:
        since = parse_time(args.since) if getattr(args, "since", None) else None
        until = parse_time(args.until) if getattr(args, "until", None) else None
    except BadTime as exc:
        raise CtlError(str(exc), "see journalctl(1) 'SPECIFYING TIMESTAMPS' for the accepted forms", EXIT_USAGE) from None
    if since is not None and until is not None and since > until:  # journalctl: "--since= must be before --until="
        raise CtlError(f"--since {args.since} ({since:%Y-%m-%d %H:%M:%S}) is after --until {args.until} ({until:%Y-%m-%d %H:%M:%S})",
                       "swap them, or widen the window", EXIT_USAGE)
    return since, until


def _reader(args: Any) -> Any:
    places, found = journal_places(args.directory, args.file)
    if not found:
        raise CtlError(f"no journal found (looked in {', '.join(places)})",
                       "the daemon's entries are in the journal when systemd runs it; a daemon started by hand "
                       "writes them to its stderr; or pass --directory/--file")
    try:
        return open_reader(args.directory, args.file)
    except OSError as exc:
        raise CtlError(f"cannot open the journal in {', '.join(places)}: {exc}",
                       "check --directory/--file, or run as a user in the systemd-journal group") from None


def _no_entries(args: Any, what: str = "entries of flipedit-previewd") -> CtlError:
    places, _ = journal_places(args.directory, args.file)
    window = f" between {args.since or 'the beginning'} and {args.until or 'now'}" if args.since or args.until else ""
    hint = "widen --since/--until or the filters; 'previewctl status' shows whether the daemon ran here"
    if not args.directory and not args.file:
        hint += (f"; the unit's own journal is '{JOURNALCTL_USER}' for the user unit ('journalctl -u' alone searches "
                 "system units only) or 'journalctl -u flipedit-preview' for the system-wide one")
    return CtlError(f"no {what} in the journal ({', '.join(places)}){window}", hint)


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
    seen = 0
    selected = []
    for entry in entries(reader, since, until):
        seen += 1
        if _matches(args, entry):
            selected.append(entry)
    lines = args.lines if args.lines is not None else (10 if args.follow else None)  # journalctl -f: the last 10, then follow
    if lines is not None:
        selected = selected[-lines:] if lines > 0 else []
    json_out = args.output == "json"
    for entry in selected:
        env.out(json.dumps(as_json(entry)) if json_out else short_line(entry))
    if not args.follow:
        if not seen:
            raise _no_entries(args)
        if not selected and lines != 0:
            raise _no_entries(args, "entries of flipedit-previewd matching the filters")
        return EXIT_OK
    if not seen:
        print(f"previewctl: no entries of flipedit-previewd yet in {', '.join(journal_places(args.directory, args.file)[0])}; "
              "waiting for new ones", file=env.stderr, flush=True)
    reader.seek_tail()
    reader.get_previous()
    try:
        while True:
            reader.wait(1.0)
            for entry in reader:
                if _matches(args, entry):
                    env.out(json.dumps(as_json(entry)) if json_out else short_line(entry))
    except KeyboardInterrupt:
        return EXIT_OK


def cmd_stats(args: Any, env: Env) -> int:
    since, until = _window(args)
    found = list(entries(_reader(args), since, until))
    if not found:
        raise _no_entries(args)
    summary = summarise(found)
    health: dict[str, Any] | None = None
    if until is None:  # the window reaches now: what the next per-minute summary will add, from /health
        try:
            health = client_for(args, env).health()
        except Unreachable:
            health = None
    summary["pending"] = pending = pending_counts(found, health)
    if wants_json(args):
        env.out(json.dumps(summary, indent=2))
        return EXIT_OK
    env.say(f"window      {args.since or 'beginning'} .. {args.until or 'now'}   ({len(found)} journal entries)")
    env.say(f"requests    {summary['requests']}   " + ("  ".join(f"{clean(k, 40)}={v}" for k, v in summary["outcomes"].items()) or "none"))
    if pending is not None:
        env.say(f"not yet     {pending['note']}")
    for name in ("queue_ms", "render_ms", "total_ms"):
        p = summary[name]
        label = name.replace("_ms", " ms")
        if p["count"]:
            env.out(f"{label:<11} p50 {show(p['p50'])}  p95 {show(p['p95'])}  p99 {show(p['p99'])}  (n={p['count']})")
        else:
            env.out(f"{label:<11} no timed requests in the window")
    worst = summary["worst_minute"]
    if worst:
        env.out(f"worst min   {worst['minute']}: {worst['not_served']} of {worst['requests']} not served")
    env.out(f"overloads   {len(summary['overload_periods'])}" + "".join(
        f"\n            {o['began'] or '(before the window)'} .. {o['ended'] or 'still'}" for o in summary["overload_periods"]))
    env.out(f"restarts    {summary['restarts']}   watchdog withheld {summary['watchdog_withheld']}   workers hung {summary['workers_hung']}")
    ra = summary["render_ahead"]
    env.out(f"render-ahead rendered {ra['rendered']}   hits {ra['hits']}   wasted {ra['wasted']}")
    if summary.get("ignored_fields"):
        env.out(f"ignored     {summary['ignored_fields']} numeric fields that were not finite numbers")
    return EXIT_OK


# --- doctor -----------------------------------------------------------------------------------

@dataclass
class Finding:
    check: str
    ok: bool | None  # None: not applicable here (e.g. systemd checks for a daemon started by hand)
    detail: str
    fix: str = ""

    @property
    def result(self) -> str:
        return "n/a" if self.ok is None else "ok" if self.ok else "fail"


def doctor_findings(args: Any, env: Env) -> list[Finding]:
    findings: list[Finding] = []
    scope, any_manager = find_scope(env.environ)
    client = client_for(args, env)
    try:
        health: dict[str, Any] | None = client.health()
        unreachable = ""
    except Unreachable as exc:
        health, unreachable = None, str(exc)
    sock: dict[str, str] = {}
    service: dict[str, str] = {}
    systemd_checks = ("socket listening", "service not failed", "journald rate limit off")
    if scope is None and (not any_manager or health is not None):
        why = no_manager_reason() if not any_manager else f"no {SERVICE} unit, and the daemon answers: it runs by hand"
        findings += [Finding(check, None, f"not applicable: {why}") for check in systemd_checks]
    elif scope is None:
        findings.append(Finding("units installed", False, f"no {SERVICE} for this user or the system",
                                "install the units (README, 'Install') and run 'systemctl --user daemon-reload'"))
    else:
        sock = unit_props(scope, SOCKET, ["ActiveState", "SubState", "ActiveEnterTimestampMonotonic"], env.environ)
        service = unit_props(scope, SERVICE, SERVICE_PROPS, env.environ)
        user = "--user " if scope else ""
        findings.append(Finding("socket listening", sock.get("ActiveState") == "active",
                                f"{SOCKET} is {show(sock.get('ActiveState'))} ({show(sock.get('SubState'))})",
                                f"systemctl {user}enable --now {SOCKET}"))
        failed = service.get("ActiveState") == "failed"
        findings.append(Finding("service not failed", not failed,
                                f"{SERVICE} is {show(service.get('ActiveState'))} (result {show(service.get('Result'))})",
                                f"journalctl {user}-u {SERVICE} -n 50; then systemctl {user}reset-failed {SERVICE} && systemctl {user}start {SOCKET}"))
        limit = service.get("LogRateLimitIntervalUSec", "")
        findings.append(Finding("journald rate limit off", limit in ("0", ""),
                                f"LogRateLimitIntervalUSec={limit}", "keep LogRateLimitIntervalSec=0 in the unit, or entries will be dropped"))
    since, _ = _window(args)
    window = since or datetime.now().astimezone() - timedelta(hours=1)
    label = f"since {args.since}" if since else "since the socket started, last hour at most"
    if scope is not None and since is None:
        # Only since the socket last started listening: an operator's deliberate restart starts afresh.
        entered = int(sock.get("ActiveEnterTimestampMonotonic") or 0)
        if entered:
            ago = time.clock_gettime(time.CLOCK_MONOTONIC) - entered / 1e6
            window = max(window, datetime.now().astimezone() - timedelta(seconds=ago))
    places, found = journal_places(args.directory, args.file)
    by_hand = health is not None and how_run(health.get("pid")).manager == "hand" and not (args.directory or args.file)
    if by_hand:  # its log lines go to the terminal that started it: no journal is expected
        findings.append(Finding("journal has the daemon's entries", None,
                                "not applicable: the daemon runs by hand and logs to its terminal"))
    elif not found:
        findings.append(Finding("journal has the daemon's entries", False, f"no journal found (looked in {', '.join(places)})",
                                "run the daemon under systemd (README, 'Install') so its entries are kept, or pass --directory"))
    else:
        try:
            if next(iter(entries(open_reader(args.directory, args.file))), None) is None:
                findings.append(Finding("journal has the daemon's entries", False,
                                        f"no entries of flipedit-previewd in {', '.join(places)}",
                                        "a daemon started by hand logs to its stderr; under systemd check 'previewctl status'"))
            else:
                findings.append(Finding(*restarts_finding(args, scope, service if scope is not None else {}, window, label)))
        except OSError as exc:
            findings.append(Finding("journal readable", False, f"{', '.join(places)}: {exc.strerror or exc}",
                                    "run as a member of the systemd-journal group"))
    if health is None:
        findings.append(Finding("daemon answers /health", False, unreachable,
                                f"systemctl --user start {SOCKET}; previewctl status" if any_manager else
                                "start it (README: 'make demo', or flipedit-previewd --listen 127.0.0.1:8081) or pass --url"))
        return findings
    findings.append(Finding("daemon answers /health", True, f"{health['status']} via {client.shown}"))
    rejected_config = _dict(health.get("config_error"))
    if rejected_config:  # only when a reload was refused: the old configuration runs, the next restart would fail
        findings.append(Finding("configuration in force", False, f"rejected on reload: {clean(str(rejected_config.get('message')))}",
                                "fix that value (flipedit-previewd --print-config checks the files), then reload the daemon"))
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
    said = f"daemon says {show(project.get('state'))}" + (f" ({project['error']})" if project.get("error") else "")
    state = project.get("state")
    if not path:
        fix = "open a project in FlipEdit (the daemon follows the editor's project list), or pass --project FILE"
    elif state == "missing":
        fix = "the file is gone: open the project again in FlipEdit, or pass --project with an existing file"
    else:
        fix = ("check the path (--project or the metadata database), file permissions, and that no "
               "-journal, -wal or -shm beside the database is a FIFO, symlink or device")
    findings.append(Finding("project database readable and fresh", state == "ok" and readable,
                            f"{path or '(no project)'}: {said}; {why}", fix))
    try:
        timeline = client.get("/debug/timeline").json()
        clips = timeline.get("clips", []) if isinstance(timeline, dict) else []
        paths = {c.get("source_path") for c in (clips if isinstance(clips, list) else [])[:10000] if isinstance(c, dict)}
        missing = sorted(clean(p) for p in paths if isinstance(p, str) and "\x00" not in p and not os.path.lexists(p))
    except (Unreachable, ValueError, KeyError, AttributeError):
        missing = ["(could not read /debug/timeline)"]
    findings.append(Finding("all media present", not missing, f"{len(missing)} missing: {', '.join(missing[:5])}" if missing else "every clip's source exists",
                            "relink the media in the editor, or restore the files"))
    problems = [p for p in health.get("media_problems") or [] if isinstance(p, dict)] if isinstance(health.get("media_problems"), list) else []
    recent = [p for p in problems if as_float(p.get("age_s", 0)) < MEDIA_PROBLEM_WINDOW_S]
    if "media_problems" in health:
        findings.append(Finding("media decodable", not recent,
                                "; ".join(f"{clean(str(p.get('path')))}: {clean(str(p.get('problem')))}" for p in recent[-5:])
                                if recent else "no clip met a problem in the last 10 minutes",
                                "the placeholder in the frame names the problem: convert the file to an allowed format "
                                "(docs/usage.md, 'Formats and containers') or replace it"))
    roots = health.get("media_roots")
    skipped = health.get("media_roots_skipped")
    if isinstance(roots, list) and not path and not roots:
        findings.append(Finding("media roots", None, "not applicable: no project, so no project folders to read media from"))
    elif isinstance(roots, list):
        findings.append(Finding("media roots", bool(roots) and not skipped,
                                "effective: " + (", ".join(str(r) for r in roots[:20]) or "(none)")
                                + ("; skipped: " + ", ".join(str(r) for r in skipped[:20]) if isinstance(skipped, list) and skipped else ""),
                                "keep media in project folders, or set allowed_roots to specific directories (never / or ~)"))
    return findings


def restarts_finding(args: Any, scope: list[str] | None, service: dict[str, str], window: datetime,
                     label: str = "since the socket started, last hour at most") -> tuple[str, bool, str, str]:
    """Restarts in the window by cause (restarts.py): only a watchdog kill or a crash fails."""
    user_scope = scope != []
    found = list(entries(open_unit_reader(args.directory, args.file, user_scope), window, None))
    restarts = classify(found)
    recent = summarise(found)
    # systemd's own count covers fault restarts whose evidence we cannot read (no manager entries in our journal).
    unexplained = 0
    if scope is not None and not any(is_manager_entry(e) for e in found):
        unexplained = max(0, int(service.get("NRestarts") or 0) - sum(1 for r in restarts if r.fault))
    ok, detail, fix = verdict(restarts, recent["watchdog_withheld"], unexplained, user_scope)
    return f"no faults (watchdog, crash) {label}", ok, detail, fix


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
            conn = open_readonly(path, time.monotonic() + timeout)  # the daemon's own opener: quoted URI, mode=ro
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
    failed = sum(1 for f in findings if f.ok is False)
    skipped = sum(1 for f in findings if f.ok is None)
    if wants_json(args):
        env.out(json.dumps({"findings": [{"check": f.check, "result": f.result, "detail": f.detail,
                                          "fix": (f.fix or None) if f.ok is False else None}
                                         for f in findings],
                            "passed": len(findings) - failed - skipped, "failed": failed, "not_applicable": skipped}, indent=2))
        return EXIT_OK if failed == 0 else EXIT_PROBLEM
    for f in findings:
        mark = {"ok": "[ok  ]", "fail": "[FAIL]", "n/a": "[n/a ]"}[f.result]
        first, *rest = fit(f"{mark} {f.check}: {f.detail}", 7, env.columns)
        env.out(env.paint(mark, f.result) + first[len(mark):])
        for line in rest:
            env.out(line)
        if f.ok is False and f.fix:
            env.say(f"       fix: {f.fix}", 12)
    env.out(f"{len(findings) - failed - skipped} passed, {failed} failed" + (f", {skipped} not applicable" if skipped else ""))
    try:
        user_unit = systemctl_scope(env.environ) == ["--user"]
    except CtlError:
        user_unit = False
    if user_unit:
        env.say(f"the unit's journal: {JOURNALCTL_USER} (a user unit: 'journalctl -u' without --user searches system units and shows nothing)", 0)
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


def monitor_line(health: dict[str, Any] | None, state: MonitorState, colour: bool = False) -> str:
    now = time.strftime("%H:%M:%S")
    if health is None:
        return f"{now} {paint('unreachable', colour)}, reconnecting (restarts seen {state.restarts})"
    lat = _dict(health.get("latency_ms"))
    status = str(health.get("status", "-"))
    return (f"{now} {paint(f'{status:<10}', colour, status)} queue {show(health.get('queue_size'))}/{show(health.get('queue_capacity'))} "
            f"in-flight {show(health.get('in_flight'))}/{show(health.get('capacity'))} rate {show(health.get('rate_per_s'))}/s "
            f"p50 {show(lat.get('p50'))} p95 {show(lat.get('p95'))} p99 {show(lat.get('p99'))} ms "
            f"rejected/min {show(health.get('rejected_last_minute'))} restarts {state.restarts}"
            + (f" proxies {proxy_text(health)}" if _dict(health.get("proxies")).get("in_progress") else ""))


def cmd_monitor(args: Any, env: Env) -> int:
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
                    env.out(json.dumps({"time": datetime.now().astimezone().isoformat(timespec="seconds"), "reachable": health is not None,
                                        "restarts_seen": state.restarts, "health": health}))
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
    console = Console(file=env.stdout, force_terminal=True, color_system="auto" if env.color else None, highlight=False,
                      width=env.width if env.width > 0 else None)
    styles = {"ok": "green", "degraded": "yellow", "overloaded": "yellow", "stopping": "bold red", "unreachable": "bold red"}

    def view(health: dict[str, Any] | None) -> Any:
        table = Table(title=Text(f"flipedit-previewd at {client.shown}"), show_header=False, expand=False)
        if health is None:
            table.add_row(Text("daemon"), Text.assemble(("unreachable", styles["unreachable"]),
                                                        f", reconnecting (restarts seen {state.restarts})"))
            return table
        for label, value in health_rows(health)[:6]:
            cell = Text(value)
            if label == "status":
                status = str(health.get("status", ""))
                cell.stylize(styles.get(status, ""), 0, len(status))
            table.add_row(Text(label), cell)
        table.add_row(Text("p95 trend"), Text(sparkline(list(state.p95))))
        proxies = _dict(health.get("proxies"))
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


# --- profile ----------------------------------------------------------------------------------

def find_py_spy(environ: dict[str, str]) -> str | None:
    """py-spy on PATH, or next to this Python (a virtual environment's bin/)."""
    found = shutil.which("py-spy", path=environ.get("PATH", os.environ.get("PATH")))
    if found:
        return found
    beside = os.path.join(os.path.dirname(sys.executable), "py-spy")
    return beside if os.access(beside, os.X_OK) else None


def cmd_profile(args: Any, env: Env) -> int:
    """The old notes' 'profile the running server' step: py-spy on the main process and its workers, one flame graph."""
    exe = find_py_spy(env.environ)
    if exe is None:
        raise CtlError("py-spy is not installed (an optional dependency of previewctl profile)",
                       "install it: 'pip install py-spy' in previewctl's environment, 'make setup', or 'apt install py-spy'")
    if os.path.isdir(args.output_file):
        raise CtlError(f"-O {args.output_file} is a directory", "name a file, e.g. -O profile.svg", EXIT_USAGE)
    client = client_for(args, env)
    health = _health_or_exit(client)
    pid = int(health.get("pid") or 0)
    workers = [int(w["pid"]) for w in health.get("workers") or [] if w.get("pid")]
    if not pid:
        raise CtlError(f"the daemon at {client.shown} did not say its pid", "is this flipedit-previewd? see 'previewctl health'")
    if not os.path.exists(f"/proc/{pid}"):
        raise CtlError(f"the daemon's pid {pid} is not visible here (another machine, container or PID namespace)",
                       "run previewctl profile where the daemon runs")
    target = client.target
    problem = daemon_problem(pid, target.shown if target.unix else target.base) if target is not None else "no address answered"
    if problem:  # /health is the answer of whatever listens there: ptrace only what holds that socket (ctl/verify.py)
        raise CtlError(f"refusing to profile pid {pid}, named by {client.shown}: {problem}",
                       "profile the daemon you own by its own address (--url unix:PATH or the port it listens on); "
                       "as root, only for the system unit")
    command = [exe, "record", "--pid", str(pid), "--subprocesses", "--duration", str(args.seconds), "--rate", str(args.rate),
               "--format", "flamegraph", "--output", args.output_file, "--nonblocking"]
    if args.idle:
        command.append("--idle")
    if not wants_json(args):
        print(f"recording pid {pid} and workers {', '.join(map(str, workers)) or '-'} for {args.seconds} s ...", file=env.stderr, flush=True)
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=args.seconds + 60)
    except subprocess.TimeoutExpired:
        raise CtlError(f"py-spy did not finish within {args.seconds + 60} s", "try again with fewer --seconds") from None
    lines = [line.strip() for line in (done.stderr + done.stdout).splitlines() if line.strip()]
    said = next((line for line in lines if line.startswith("Error")), lines[-1] if lines else "")[:300]
    if "No stack counts found" in said:
        raise CtlError(f"py-spy saw no Python code running in {args.seconds} s: the daemon was idle",
                       "profile while the editor (or bench/load.py) loads it, or add --idle to record waiting threads too")
    if done.returncode != 0 or not os.path.exists(args.output_file):
        if any(word in said.lower() for word in ("permission denied", "operation not permitted", "ptrace")):
            raise CtlError(f"no permission to attach to pid {pid}: {said}",
                           "py-spy needs ptrace: run as root (sudo previewctl profile ...) or as the daemon's user with "
                           "kernel.yama.ptrace_scope=0")
        raise CtlError(f"py-spy failed (exit {done.returncode}): {said or 'no output'}", "run the py-spy command by hand to see more")
    if not _has_samples(args.output_file):
        os.unlink(args.output_file)  # py-spy's "ERROR: No valid input" picture is not a flame graph
        raise CtlError(f"py-spy saw nothing to sample in {args.seconds} s: the daemon was idle; no file written",
                       "profile while the editor (or bench/load.py) loads it, or add --idle to record waiting threads too")
    size = os.path.getsize(args.output_file)
    if wants_json(args):
        env.out(json.dumps({"output": args.output_file, "bytes": size, "seconds": args.seconds, "pid": pid, "workers": workers}))
    else:
        env.say(f"flame graph of pid {pid} and workers {', '.join(map(str, workers)) or '-'} ({args.seconds} s) -> {args.output_file} "
                f"({size} bytes); open it in a browser", 2)
    return EXIT_OK


def _has_samples(path: str) -> bool:
    """A flame graph with frames in it; inferno's picture for no input says "No valid input"."""
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            text = handle.read(1 << 20)
    except OSError:
        return False
    return "No valid input" not in text and "<g" in text
