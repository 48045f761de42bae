"""A real journald and a real ``systemd --user`` manager in a private mount namespace.

Follows ../shared/reference/systemd-sandbox.md: the sandbox gets its own
cgroup subtree (created here, removed depth-first at the end), tmpfs over
/run/systemd, /run/log, /run/user and root's user unit directory, a journald
and root's user manager. Everything is ended by PID; nothing is left behind.

Usable as a context manager from pytest, or by hand:
``python -m tests.support.sandbox`` starts one and prints how to enter it.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

CGROUP_ROOTS = (Path("/sys/fs/cgroup/unified"), Path("/sys/fs/cgroup/systemd"))
RUNTIME_DIR = "/run/user/0"
USER_UNIT_DIR = "/root/.config/systemd/user"

INIT_SCRIPT = r"""
set -eu
scope="$1"; manager="$2"; unit_dir="$3"
for root in /sys/fs/cgroup/unified /sys/fs/cgroup/systemd; do echo $$ > "$root/$scope/cgroup.procs"; done
# /run is not a mount point on these machines; on a booted system it is (a tmpfs), and systemd relies
# on that: MountAPIVFS=, implied by ProtectKernelTunables= and other hardening, mounts an empty tmpfs
# on a /run that is not a mount point, hiding journald's and the manager's sockets from the service.
mount --bind /run /run
mount -t tmpfs tmpfs /run/systemd
mkdir -p /run/systemd/system /run/systemd/journal
# The inaccessible nodes PID 1 creates at boot: the hardening directives (ProtectKernelModules=,
# ProtectProc=, InaccessiblePaths=, ...) bind-mount them over what a service must not see.
mkdir -m 0755 /run/systemd/inaccessible
( cd /run/systemd/inaccessible && touch reg && mkdir dir && mkfifo fifo && mknod chr c 0 0 && mknod blk b 0 0 \
  && python3 -c 'import socket; socket.socket(socket.AF_UNIX).bind("sock")' && chmod 0000 reg dir fifo chr blk sock )
mount -t tmpfs tmpfs /run/log
mount -t tmpfs tmpfs /run/user
mount -t tmpfs tmpfs "$unit_dir"
# The units' CacheDirectory= (proxy media) for root's manager: in the sandbox only, gone with it.
mkdir -p /root/.cache && mount -t tmpfs tmpfs /root/.cache
mkdir -m 700 /run/user/0
/lib/systemd/systemd-journald &
journald=$!
for i in $(seq 100); do [ -S /run/systemd/journal/socket ] && break; sleep 0.05; done
(
  for root in /sys/fs/cgroup/unified /sys/fs/cgroup/systemd; do echo $BASHPID > "$root/$manager/cgroup.procs"; done
  exec env XDG_RUNTIME_DIR=/run/user/0 /lib/systemd/systemd --user --log-target=journal </dev/null >/dev/null 2>&1
) &
manager_pid=$!
for i in $(seq 200); do [ -S /run/user/0/systemd/private ] && break; sleep 0.05; done
echo "{\"journald\": $journald, \"manager\": $manager_pid}"
# Stay until the test process closes our stdin, then stop the manager and journald.
read -r _ || true
kill -TERM $manager_pid 2>/dev/null || true
for i in $(seq 100); do kill -0 $manager_pid 2>/dev/null || break; sleep 0.1; done
kill -KILL $manager_pid 2>/dev/null || true
wait $manager_pid 2>/dev/null || true
kill -TERM $journald 2>/dev/null || true
wait $journald 2>/dev/null || true
"""


class SandboxError(RuntimeError):
    pass


class Sandbox:
    def __init__(self, name: str | None = None) -> None:
        self.name = name or f"sandbox-{uuid.uuid4().hex[:8]}"
        self.scope = f"user.slice/user-0.slice/session-{self.name}.scope"
        self.manager_cg = "user.slice/user-0.slice/user@0.service"
        self.created: list[Path] = []
        self.proc: subprocess.Popen[str] | None = None
        self.pids: dict[str, int] = {}
        self.made_unit_dir = ""

    # --- set-up and tear-down ------------------------------------------------------------

    def __enter__(self) -> Sandbox:
        self.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def _mkcg(self, relative: str) -> None:
        for root in CGROUP_ROOTS:
            path = root
            for part in relative.split("/"):
                path = path / part
                if not path.exists():
                    path.mkdir()
                    self.created.append(path)

    def start(self) -> None:
        if os.geteuid() != 0:
            raise SandboxError("the systemd sandbox needs root")
        for tool in ("/lib/systemd/systemd", "/lib/systemd/systemd-journald", "unshare", "nsenter"):
            if not (os.path.exists(tool) or shutil.which(tool)):
                raise SandboxError(f"{tool} is missing (Debian package systemd / util-linux)")
        if any(
            p.is_dir() and (p / "user@0.service").exists()
            for p in (r / "user.slice/user-0.slice" for r in CGROUP_ROOTS)
        ):
            raise SandboxError("another sandbox (or a real user@0.service) is running")
        self._mkcg(self.scope)
        self._mkcg(self.manager_cg)
        if not os.path.isdir(USER_UNIT_DIR):
            # Remember the topmost directory we create, so teardown removes exactly that.
            top = Path(USER_UNIT_DIR)
            while not top.parent.exists():
                top = top.parent
            self.made_unit_dir = str(top)
            os.makedirs(USER_UNIT_DIR)
        self.proc = subprocess.Popen(
            [
                "unshare",
                "-m",
                "--propagation",
                "private",
                "bash",
                "-c",
                INIT_SCRIPT,
                "sandbox",
                self.scope,
                self.manager_cg,
                USER_UNIT_DIR,
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            self.stop()
            raise SandboxError("sandbox did not start")
        self.pids = json.loads(line)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            state = self.systemctl("is-system-running", check=False).stdout.strip()
            if state in ("running", "degraded"):
                break
            time.sleep(0.2)
        else:
            raise SandboxError(f"user manager not running (state {state!r})")

    def stop(self) -> None:
        if self.proc is not None:
            if self.proc.poll() is None and self.proc.stdin:
                try:
                    self.proc.stdin.close()
                except OSError:
                    pass
                try:
                    self.proc.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    pass
            for pid in list(self.pids.values()) + [self.proc.pid]:
                _kill(pid)
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
            self.proc = None
        # Anything still in the sandbox's cgroups was started by the sandbox: end it by PID.
        for _ in range(50):
            pids = self.cgroup_pids()
            if not pids:
                break
            for pid in pids:
                _kill(pid)
            time.sleep(0.1)
        for root in CGROUP_ROOTS:
            base = root / "user.slice"
            if base.exists():
                for path in sorted(
                    (p for p in base.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True
                ):
                    if self._ours(path):
                        _rmdir(path)
        for path in sorted(self.created, key=lambda p: len(p.parts), reverse=True):
            _rmdir(path)
        if self.made_unit_dir:
            shutil.rmtree(self.made_unit_dir, ignore_errors=True)
            self.made_unit_dir = ""

    def _ours(self, path: Path) -> bool:
        text = str(path)
        return f"session-{self.name}.scope" in text or "/user@0.service" in text

    def cgroup_pids(self) -> list[int]:
        pids: set[int] = set()
        for root in CGROUP_ROOTS:
            for relative in (self.scope, self.manager_cg):
                base = root / relative
                if not base.exists():
                    continue
                for procs in base.rglob("cgroup.procs"):
                    try:
                        pids.update(int(p) for p in procs.read_text().split())
                    except OSError:
                        pass
        pids.discard(os.getpid())
        return sorted(pids)

    # --- running things inside -------------------------------------------------------------

    def run(
        self,
        *argv: str,
        check: bool = True,
        timeout: float = 60,
        env: dict[str, str] | None = None,
        input: str | None = None,
    ) -> subprocess.CompletedProcess[str]:
        if self.proc is None:
            raise SandboxError("sandbox not started")
        full_env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "XDG_RUNTIME_DIR": RUNTIME_DIR,
            "HOME": "/root",
            "SYSTEMD_PAGER": "",
            "SYSTEMD_COLORS": "0",
            "LANG": "C.UTF-8",
            **(env or {}),
        }
        result = subprocess.run(
            ["nsenter", "-t", str(self.proc.pid), "-m", "--", *argv],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=full_env,
            input=input,
        )
        if check and result.returncode != 0:
            raise SandboxError(
                f"{' '.join(argv)} failed ({result.returncode}): {result.stderr.strip() or result.stdout.strip()}"
            )
        return result

    def systemctl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return self.run("systemctl", "--user", "--no-pager", *args, check=check)

    def show(self, unit: str, *props: str) -> dict[str, str]:
        out = self.systemctl("show", unit, *(f"-p{p}" for p in props)).stdout
        return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)

    def journal(self, *matches: str, since_cursor: str | None = None) -> list[dict[str, Any]]:
        args = ["journalctl", "--no-pager", "-o", "json", *matches]
        if since_cursor:
            args += ["--after-cursor", since_cursor]
        out = self.run(*args, check=False).stdout
        return [json.loads(line) for line in out.splitlines() if line.strip()]

    def write_file(self, path: str, text: str) -> None:
        self.run("sh", "-c", 'mkdir -p "$(dirname "$1")" && cat > "$1"', "sh", path, input=text)

    def install_units(self, unit_dir: Path, dropins: dict[str, str]) -> None:
        """The project's real unit files, plus drop-ins (ExecStart, test port) for this checkout."""
        for unit in sorted(unit_dir.glob("flipedit-preview.*")):
            self.write_file(f"{USER_UNIT_DIR}/{unit.name}", unit.read_text())
        for unit, text in dropins.items():
            self.write_file(f"{USER_UNIT_DIR}/{unit}.d/50-test.conf", text)
        self.systemctl("daemon-reload")


def _kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _rmdir(path: Path) -> None:
    for _ in range(50):
        try:
            path.rmdir()
            return
        except FileNotFoundError:
            return
        except OSError:
            time.sleep(0.1)


def _mount_namespace(pid: str) -> str:
    try:
        return os.readlink(f"/proc/{pid}/ns/mnt")
    except OSError:
        return ""  # ended meanwhile


def _named_processes() -> list[str]:
    ps = subprocess.run(["ps", "-eo", "pid,args"], capture_output=True, text=True).stdout
    return [
        line.strip()
        for line in ps.splitlines()[1:]
        if any(
            k in line for k in ("systemd --user", "systemd-journald", "flipedit-previewd", "systemd-socket-activate")
        )
    ]


def leftovers(where: str = "anywhere") -> dict[str, list[str]]:
    """What a finished test run must not leave: cgroups under the roots, tmpfs mounts, sandbox processes.

    ``where``: "sandboxes" counts only what a sandbox makes (processes in another mount namespace than
    ours, cgroups, mounts), "here" only processes in our mount namespace (the integration tests'
    daemons): scripts/test.sh runs the systemd layers and the others as two pytest sessions at once,
    and each must not count the other's work in progress as left behind."""
    found: dict[str, list[str]] = {"cgroups": [], "mounts": [], "processes": []}
    ours = _mount_namespace("self")
    if where == "here":
        return {
            **found,
            "processes": [line for line in _named_processes() if _mount_namespace(line.split()[0]) == ours],
        }
    for root in CGROUP_ROOTS:
        found["cgroups"] += [str(p) for p in root.iterdir() if p.is_dir()] if root.exists() else []
    with open("/proc/self/mounts") as handle:
        for line in handle:
            parts = line.split()
            if parts[2] == "tmpfs" and parts[1] in ("/run/systemd", "/run/log", "/run/user", USER_UNIT_DIR):
                found["mounts"].append(parts[1])
    for line in _named_processes():
        if where == "sandboxes" and _mount_namespace(line.split()[0]) in ("", ours):
            continue
        found["processes"].append(line)
    return found


if __name__ == "__main__":
    with Sandbox() as box:
        print(
            f"sandbox up: nsenter -t {box.proc.pid if box.proc else '?'} -m env XDG_RUNTIME_DIR={RUNTIME_DIR} "
            f"systemctl --user status"
        )
        print("press Enter to tear down")
        sys.stdin.readline()
    print(json.dumps(leftovers()))
