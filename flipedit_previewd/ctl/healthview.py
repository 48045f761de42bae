"""The /health document for a person: the health view's lines, monitor's table rows, status's project line.

Every field comes from the daemon (or whatever answers at --url): absent or junk values are shown
as "-" (``words.show``), strings are escaped (``safeout.clean``), lists are bounded.
"""

from __future__ import annotations

import os
from datetime import datetime
from typing import Any

from .running import Running, pinned_by
from .safeout import as_dict, as_int, clean
from .words import duration, fit, paint, show


def bar(used: Any, capacity: Any, width: int = 20) -> str:
    used, capacity = as_int(used), as_int(capacity)
    filled = 0 if capacity <= 0 else min(width, round(width * used / capacity))
    return "[" + "#" * filled + "." * (width - filled) + f"] {used}/{capacity}"


def megabytes(value: Any) -> str:
    return f"{as_int(value) / 1e6:.0f} MB" if as_int(value) < 10**9 else f"{as_int(value) / 1e9:.1f} GB"


def proxy_text(h: dict[str, Any]) -> str:
    """/health's "proxies" on one line: made, the one being made with a progress bar, queued, disk use."""
    p = as_dict(h.get("proxies"))
    if not p:
        return "-"
    if not p.get("enabled"):
        return "off (proxies = false, or the store could not be used)"
    current = as_dict(p.get("in_progress"))
    making = ""
    if current:
        done, total = as_int(current.get("frames_done")), as_int(current.get("frames_total"))
        making = f"making {clean(os.path.basename(str(current.get('source', ''))), 60)} {bar(done, total, 20)}, "
    failed = f", {show(p.get('failed'))} failed" if as_int(p.get("failed")) else ""
    stored = (
        f" ({show(p.get('stored'))} kept)" if "stored" in p and as_int(p.get("stored")) != as_int(p.get("made")) else ""
    )
    return (
        f"{show(p.get('made'))} made{stored}, {making}{show(p.get('queued'))} queued{failed}; "
        f"disk {megabytes(p.get('disk_bytes'))} of {megabytes(p.get('budget_bytes'))}"
    )


def health_rows(h: dict[str, Any], colour: bool = False, running: Running | None = None) -> list[tuple[str, str]]:
    """(label, value) pairs: the health view's lines, and monitor's table rows (whole labels)."""
    lat = as_dict(h.get("latency_ms"))
    counters = as_dict(h.get("counters"))
    project = as_dict(h.get("project"))
    status = str(h.get("status", "-"))
    rows = [
        (
            "status",
            f"{paint(status, colour)}   (pid {show(h.get('pid'))}, up {duration(h.get('uptime_s'))}, version "
            f"{show(h.get('version'))})",
        ),
        ("queue", bar(as_int(h.get("queue_size")), as_int(h.get("queue_capacity")))),
        (
            "in flight",
            f"{show(h.get('in_flight', h.get('active_requests')))}/{show(h.get('capacity', h.get('max_concurrent')))} "
            f"workers"
            f"   connections {show(h.get('connections'))}/{show(h.get('max_connections'))}",
        ),
        ("rate", f"{show(h.get('rate_per_s'))} frames/s   rejected last minute {show(h.get('rejected_last_minute'))}"),
        (
            "latency",
            f"p50 {show(lat.get('p50'), 'ms')}  p95 {show(lat.get('p95'), 'ms')}  p99 {show(lat.get('p99'), 'ms')}"
            f"  ({show(lat.get('samples'))} samples)"
            if lat.get("samples")
            else "no renders yet",
        ),
        ("counters", "  ".join(f"{k}={show(v)}" for k, v in sorted(counters.items())) or "-"),
        (
            "project",
            f"{project.get('path') or '(none)'} [{show(project.get('state'))}] {project.get('error') or ''}".rstrip(),
        ),
        ("proxies", proxy_text(h)),
    ]
    workers = h.get("workers")
    for worker in (workers if isinstance(workers, list) else [])[:64]:
        worker = as_dict(worker)
        frame = f" frame {worker['frame']}" if worker.get("frame") is not None else ""
        rows.append(
            (
                f"worker {show(worker.get('index'))}",
                f"pid {show(worker.get('pid'))} {paint(str(worker.get('state', '-')), colour)}"
                f"{frame} for {duration(worker.get('since_s'))}, {show(worker.get('completed'))} done",
            )
        )
    roots = h.get("media_roots")
    if isinstance(roots, list):
        rows.append(("media roots", ", ".join(str(r) for r in roots[:20]) or "(none: no media can be read)"))
    rejected = as_dict(h.get("config_error"))
    if rejected:  # a reload's configuration could not be used: the old one runs, a restart would fail (issue 26)
        rows.append(("config", f"{paint('rejected on reload', colour)}: {clean(str(rejected.get('message')))}"))
    pending = h.get("restart_pending")
    if isinstance(pending, list) and pending:
        # A reload kept these settings' running values: the configuration says otherwise until a restart.
        rows.append(
            (
                "restart",
                f"{paint('pending', colour)} for {', '.join(show(p) for p in pending[:20])}: "
                "the configuration changed them, a reload cannot; " + (running or Running("unknown")).restart_advice(),
            )
        )
    return rows


def render_health(
    h: dict[str, Any], colour: bool = False, running: Running | None = None, columns: int = 80
) -> list[str]:
    return [
        line for label, value in health_rows(h, colour, running) for line in fit(f"{label:<11} {value}", 12, columns)
    ]


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
