"""How the daemon runs, from /proc: under a systemd unit (user or system) or by hand, and with which flags.

Advice depends on it: ``systemctl --user restart`` helps a unit, not a daemon started by hand; a
project shown as "pinned" was pinned by --project, --demo or the configuration. /proc of a
process in another PID namespace (or another machine) is not visible: then it is "unknown" and
the advice names both ways.
"""

from __future__ import annotations

from dataclasses import dataclass, field

UNIT = "flipedit-preview.service"


@dataclass(frozen=True)
class Running:
    manager: str  # "user" or "system" (a systemd unit), "hand" (started by hand) or "unknown"
    argv: tuple[str, ...] = field(default=())

    def has_flag(self, flag: str) -> bool:
        return any(arg == flag or arg.startswith(flag + "=") for arg in self.argv)

    def restart_advice(self) -> str:
        return {
            "user": "systemctl --user restart flipedit-preview",
            "system": "sudo systemctl restart flipedit-preview",
            "hand": "stop the daemon (Ctrl-C) and start it again",
        }.get(self.manager, "systemctl --user restart flipedit-preview, or stop and start a daemon run by hand")


def how_run(pid: object, proc: str = "/proc") -> Running:
    """The daemon ``pid``'s manager (its cgroup names the unit, or systemd set INVOCATION_ID) and argv."""
    if not isinstance(pid, int) or isinstance(pid, bool) or pid <= 0:
        return Running("unknown")
    try:
        with open(f"{proc}/{pid}/cgroup", encoding="utf-8", errors="replace") as handle:
            cgroup = handle.read(65536)
        with open(f"{proc}/{pid}/cmdline", "rb") as raw:
            argv = tuple(a.decode(errors="replace") for a in raw.read(65536).split(b"\0") if a)
    except OSError:
        return Running("unknown")
    if f"/{UNIT}" in cgroup:
        return Running("user" if "/user@" in cgroup else "system", argv)
    try:
        with open(f"{proc}/{pid}/environ", "rb") as raw:
            environ = raw.read(1 << 20).split(b"\0")
    except OSError:
        return Running("unknown", argv)  # another user's process: its environment is not ours to read
    if any(entry.startswith(b"INVOCATION_ID=") for entry in environ):
        return Running("user" if "/user@" in cgroup else "system", argv)
    return Running("hand", argv)


def pinned_by(running: Running | None) -> str:
    """Why a project is served without following the editor's list."""
    if running is None or running.manager == "unknown":
        return "pinned (--project, --demo or the configuration)"
    if running.has_flag("--demo"):
        return "the demo project (--demo)"
    if running.has_flag("--project"):
        return "pinned by --project"
    return "pinned by the configuration (project, or FLIPEDIT_PREVIEWD_PROJECT)"
