"""A booted Debian: systemd-nspawn with systemd as PID 1 over a throw-away copy of this machine's root.

Follows ../shared/reference/booted-systemd.md, with two changes that make cleanup certain:
- the tmpfs and the overlay are mounted inside a private mount namespace (``unshare -m``) that only
  nspawn lives in, so they vanish with it: nothing can be left mounted on the machine;
- nspawn starts inside a cgroup of our own (unique name, both hierarchies), so its ``payload`` and
  ``supervisor`` groups are ours and are removed depth-first at the end, never another run's.
Everything is ended by PID. The container has a private network (its own loopback only), so clients
run inside it, with its python3 and the installed package.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
import uuid
from pathlib import Path

CGROUP_ROOTS = (Path("/sys/fs/cgroup/unified"), Path("/sys/fs/cgroup/systemd"))
PREFIX = "flipedit-boot-"

BOOT_SCRIPT = r"""
set -eu
base="$1"; cg="$2"; name="$3"
for root in /sys/fs/cgroup/unified /sys/fs/cgroup/systemd; do echo $$ > "$root/$cg/cgroup.procs"; done
mount -t tmpfs tmpfs "$base/ovt"
mkdir -p "$base/ovt/upper" "$base/ovt/work"
mount -t overlay overlay -o "lowerdir=/,upperdir=$base/ovt/upper,workdir=$base/ovt/work" "$base/root"
# nspawn refuses a container whose machine id equals the host's
tr -d - < /proc/sys/kernel/random/uuid > "$base/root/etc/machine-id"
exec systemd-nspawn -q -D "$base/root" -b --register=no --keep-unit --link-journal=no --private-network \
  -M "$name" --console=passive
"""


class ContainerError(RuntimeError):
    pass


class Container:
    def __init__(self) -> None:
        self.name = PREFIX + uuid.uuid4().hex[:10]
        self.base = Path("/var/tmp") / self.name
        self.proc: subprocess.Popen[bytes] | None = None
        self.init_pid = 0
        self.log_path = self.base.with_suffix(".log")

    # --- lifecycle -----------------------------------------------------------------------------

    def start(self, timeout: float = 90) -> Container:
        if os.geteuid() != 0:
            raise ContainerError("needs root")
        if not shutil.which("systemd-nspawn"):
            raise ContainerError("systemd-nspawn missing (apt-get install systemd-container)")
        if not all(root.exists() for root in CGROUP_ROOTS):
            raise ContainerError("no hybrid cgroup hierarchy at /sys/fs/cgroup/{unified,systemd}")
        (self.base / "ovt").mkdir(parents=True)
        (self.base / "root").mkdir()
        for root in CGROUP_ROOTS:
            (root / self.name).mkdir()
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                [
                    "unshare",
                    "-m",
                    "--propagation",
                    "private",
                    "sh",
                    "-c",
                    BOOT_SCRIPT,
                    "boot",
                    str(self.base),
                    self.name,
                    self.name,
                ],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        state = ""
        while state not in ("running", "degraded"):
            if self.proc.poll() is not None:
                raise ContainerError(f"nspawn exited {self.proc.returncode}: {self.boot_log()[-2000:]}")
            if time.monotonic() > deadline:
                raise ContainerError(f"container did not boot in {timeout} s ({state!r}): {self.boot_log()[-2000:]}")
            time.sleep(0.2)
            # nspawn's child becomes the container's systemd once it has set up the namespaces.
            self.init_pid = self._child_of(self.proc.pid)
            if not self.init_pid or Path(f"/proc/{self.init_pid}/comm").read_text().strip() != "systemd":
                continue
            state = self.run(
                "systemctl", "is-system-running", "--wait", check=False, timeout=max(5.0, deadline - time.monotonic())
            ).stdout.strip()
        return self

    @staticmethod
    def _child_of(pid: int) -> int:
        """nspawn's child (the container's PID 1), found by parent PID, never by name."""
        try:
            children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        except OSError:
            return 0
        return int(children[0]) if children else 0

    def stop(self, timeout: float = 30) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)  # nspawn shuts the container down cleanly
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        for root in CGROUP_ROOTS:
            _rmdir_tree(root / self.name)
        # The mounts lived in nspawn's private mount namespace; only the empty mount points remain.
        self._boot_log = self.boot_log()
        self.log_path.unlink(missing_ok=True)
        for path in (self.base / "root", self.base / "ovt", self.base):
            try:
                path.rmdir()
            except FileNotFoundError:
                pass

    def leftovers(self) -> list[str]:
        left = []
        if self.proc is not None and self.proc.poll() is None:
            left.append(f"process {self.proc.pid}")
        left += [str(root / self.name) for root in CGROUP_ROOTS if (root / self.name).exists()]
        left += [str(p) for p in (self.base, self.log_path) if p.exists()]
        with open("/proc/self/mounts") as handle:
            left += [line.split()[1] for line in handle if self.name in line]
        return left

    def boot_log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return getattr(self, "_boot_log", "")

    def __enter__(self) -> Container:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- running things inside ------------------------------------------------------------------

    def run(
        self,
        *argv: str,
        user: str | None = None,
        check: bool = True,
        timeout: float = 60,
        input: str | None = None,
        env: dict[str, str] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """argv in all the container's namespaces; as ``user`` (with its XDG_RUNTIME_DIR) when given."""
        environ = {
            "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
            "LANG": "C.UTF-8",
            "SYSTEMD_PAGER": "",
            "NO_COLOR": "1",
            **(env or {}),
        }
        if user is not None:
            uid = self.uid(user)
            environ.update(
                HOME=f"/home/{user}",
                USER=user,
                XDG_RUNTIME_DIR=f"/run/user/{uid}",
                DBUS_SESSION_BUS_ADDRESS=f"unix:path=/run/user/{uid}/bus",
            )
            argv = ("runuser", "-u", user, "--", "env", *(f"{k}={v}" for k, v in environ.items()), *argv)
        command = [
            "nsenter",
            "-t",
            str(self.init_pid),
            "-a",
            "env",
            "-i",
            *(f"{k}={v}" for k, v in environ.items()),
            *argv,
        ]
        result = subprocess.run(command, capture_output=True, text=True, timeout=timeout, input=input)
        if check and result.returncode != 0:
            raise ContainerError(
                f"{' '.join(argv)} -> {result.returncode}\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
            )
        return result

    def uid(self, user: str) -> int:
        return int(self.run("id", "-u", user).stdout)

    def python(
        self, code: str, user: str | None = None, check: bool = True, timeout: float = 60
    ) -> subprocess.CompletedProcess[str]:
        """Debian's python3 inside the container, with the installed package (not the project's venv)."""
        return self.run("/usr/bin/python3", "-c", code, user=user, check=check, timeout=timeout)


def _rmdir_tree(path: Path) -> None:
    if not path.exists():
        return
    for child in sorted((p for p in path.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True):
        try:
            child.rmdir()
        except OSError:
            pass
    try:
        path.rmdir()
    except OSError:
        pass


def stale() -> list[str]:
    """Any container directory, cgroup or mount of ours on the machine (for the end-of-run check)."""
    found = [str(p) for p in Path("/var/tmp").glob(PREFIX + "*")]
    for root in CGROUP_ROOTS:
        found += [str(p) for p in root.glob(PREFIX + "*")] if root.exists() else []
    with open("/proc/self/mounts") as handle:
        found += [line.split()[1] for line in handle if PREFIX in line]
    return found
