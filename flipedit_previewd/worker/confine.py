"""How a worker process confines itself before it reads untrusted media: seccomp and Landlock by raw syscalls.

FFmpeg parses whatever file a project names and has memory-safety CVEs every year. A worker that a
crafted file takes over must gain as little as a browser's renderer does: it may not open a socket,
run a program, reach into another process or read anything of the user's outside the media roots.
Two kernel mechanisms, both usable without privileges and without libseccomp (no new dependency):

- **seccomp** (``install_seccomp``): a classic-BPF filter, installed with ``prctl`` after
  ``PR_SET_NO_NEW_PRIVS``, that answers EPERM to the system calls a decoder never needs (sockets,
  exec, ptrace and cross-process memory access, namespaces, io_uring whose operations would bypass
  the filter). The filter checks the audit architecture first: a call made through another ABI
  (i386 ``int 0x80`` on x86_64) kills the process, x32 calls get EPERM. Installed on the main thread
  before the worker starts any thread, so every thread inherits it.
- **Landlock** (``lock_filesystem``): the filesystem becomes read-only and limited to the media
  roots plus what the worker itself needs (its interpreter, its import path, the directories of its
  loaded libraries, a few device and /proc files); no write, no exec anywhere; on ABI 6+ no signals
  to processes outside the worker. Landlock rules are per path hierarchy and can only be tightened,
  which is why a worker locks itself at its first job, to that job's roots, and is replaced by a
  fresh one when the roots change (``workers.WorkerPool``). A ruleset binds the calling thread and
  the threads it starts later: the worker locks on its main thread before it starts the render-ahead
  thread or any decoder thread; its one older thread (the orphan guard) locks itself out of the
  filesystem entirely (``lock_thread_out``).

Pure parts (the BPF program, the Landlock masks and attribute bytes, the path list) are separate
from the system calls so that tests/unit can check them without installing anything.
"""

from __future__ import annotations

import ctypes
import errno
import os
import platform
import stat
import struct
import sys
from collections.abc import Iterable
from dataclasses import dataclass

# --- seccomp ------------------------------------------------------------------------------------

PR_SET_NO_NEW_PRIVS = 38
PR_SET_SECCOMP = 22
SECCOMP_MODE_FILTER = 2
SECCOMP_RET_KILL_PROCESS = 0x80000000
SECCOMP_RET_ERRNO = 0x00050000
SECCOMP_RET_ALLOW = 0x7FFF0000
BPF_LD_W_ABS = 0x20  # BPF_LD | BPF_W | BPF_ABS
BPF_JEQ_K = 0x15  # BPF_JMP | BPF_JEQ | BPF_K
BPF_JGE_K = 0x35  # BPF_JMP | BPF_JGE | BPF_K
BPF_JSET_K = 0x45  # BPF_JMP | BPF_JSET | BPF_K
BPF_RET_K = 0x06  # BPF_RET | BPF_K
OFFSET_NR, OFFSET_ARCH, OFFSET_ARG0 = 0, 4, 16  # struct seccomp_data (arg0's low word: little-endian)
X32_SYSCALL_BIT = 0x40000000
# CLONE_NEWNS | CLONE_NEWCGROUP | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWUSER | CLONE_NEWPID | CLONE_NEWNET:
# a new user namespace is the usual first step of a kernel exploit; a decoder never needs one.
CLONE_NAMESPACES = 0x00020000 | 0x02000000 | 0x04000000 | 0x08000000 | 0x10000000 | 0x20000000 | 0x40000000


@dataclass(frozen=True)
class Arch:
    name: str
    audit: int  # AUDIT_ARCH_* as seccomp_data.arch reports it
    syscalls: dict[str, int]
    x32: bool = False  # x86_64: calls with X32_SYSCALL_BIT are another ABI with the same arch value


# Refused with EPERM, except clone3: its flags live in memory the filter cannot read, so it gets
# ENOSYS and glibc falls back to clone (pthread_create does), whose flags the filter checks.
DENIED = (
    "socket",
    "socketpair",
    "connect",
    "bind",
    "listen",
    "accept",
    "accept4",  # no network, no new IPC
    "execve",
    "execveat",  # no program
    "ptrace",
    "process_vm_readv",
    "process_vm_writev",  # no reaching into the daemon or another worker
    "unshare",
    "setns",  # no namespaces (clone's namespace flags: below)
    "io_uring_setup",
    "io_uring_enter",
    "io_uring_register",  # io_uring's operations bypass seccomp
    "bpf",
    "perf_event_open",
)

# Calls added since Linux 5.1 (pidfd_send_signal, 424, on) have one number on every architecture: the kernel
# numbers them in one common table, so each architecture's table takes them from here.
UNIFIED = {
    "io_uring_setup": 425,
    "io_uring_enter": 426,
    "io_uring_register": 427,
    "clone3": 435,
    "landlock_create_ruleset": 444,
    "landlock_add_rule": 445,
    "landlock_restrict_self": 446,
}

ARCHES = {
    "x86_64": Arch(
        "x86_64",
        0xC000003E,
        {
            "socket": 41,
            "connect": 42,
            "accept": 43,
            "bind": 49,
            "listen": 50,
            "socketpair": 53,
            "clone": 56,
            "execve": 59,
            "ptrace": 101,
            "unshare": 272,
            "accept4": 288,
            "perf_event_open": 298,
            "setns": 308,
            "process_vm_readv": 310,
            "process_vm_writev": 311,
            "bpf": 321,
            "execveat": 322,
            **UNIFIED,
        },
        x32=True,
    ),
    "aarch64": Arch(
        "aarch64",
        0xC00000B7,
        {
            "unshare": 97,
            "ptrace": 117,
            "socket": 198,
            "socketpair": 199,
            "bind": 200,
            "listen": 201,
            "accept": 202,
            "connect": 203,
            "clone": 220,
            "execve": 221,
            "perf_event_open": 241,
            "accept4": 242,
            "setns": 268,
            "process_vm_readv": 270,
            "process_vm_writev": 271,
            "bpf": 280,
            "execveat": 281,
            **UNIFIED,
        },
    ),
}


def current_arch() -> Arch | None:
    """The running architecture's table, None where the sandbox has none (then it says it is unavailable)."""
    machine = platform.machine()
    if (
        sys.maxsize <= 2**32
    ):  # a 32-bit interpreter on a 64-bit kernel calls through the other ABI: the filter would kill it
        return None
    return ARCHES.get({"amd64": "x86_64", "arm64": "aarch64"}.get(machine, machine))


def _insn(code: int, jt: int, jf: int, k: int) -> bytes:
    return struct.pack("=HBBI", code, jt, jf, k)  # struct sock_filter


def seccomp_program(arch: Arch) -> bytes:
    """The filter as ``struct sock_filter`` instructions (8 bytes each), default allow."""
    eperm = SECCOMP_RET_ERRNO | errno.EPERM
    prog = [
        _insn(BPF_LD_W_ABS, 0, 0, OFFSET_ARCH),
        _insn(BPF_JEQ_K, 1, 0, arch.audit),
        _insn(BPF_RET_K, 0, 0, SECCOMP_RET_KILL_PROCESS),
        _insn(BPF_LD_W_ABS, 0, 0, OFFSET_NR),
    ]
    if arch.x32:
        prog += [_insn(BPF_JGE_K, 0, 1, X32_SYSCALL_BIT), _insn(BPF_RET_K, 0, 0, eperm)]
    for name in DENIED:
        prog += [_insn(BPF_JEQ_K, 0, 1, arch.syscalls[name]), _insn(BPF_RET_K, 0, 0, eperm)]
    prog += [
        _insn(BPF_JEQ_K, 0, 1, arch.syscalls["clone3"]),
        _insn(BPF_RET_K, 0, 0, SECCOMP_RET_ERRNO | errno.ENOSYS),
        # clone: refused when its flags (arg0) ask for a namespace; the last test, as it loads arg0 into A
        _insn(BPF_JEQ_K, 0, 3, arch.syscalls["clone"]),
        _insn(BPF_LD_W_ABS, 0, 0, OFFSET_ARG0),
        _insn(BPF_JSET_K, 0, 1, CLONE_NAMESPACES),
        _insn(BPF_RET_K, 0, 0, eperm),
        _insn(BPF_RET_K, 0, 0, SECCOMP_RET_ALLOW),
    ]
    return b"".join(prog)


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


def _prctl(libc: ctypes.CDLL, option: int, arg2: int, arg3: int = 0) -> None:
    libc.prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
    if libc.prctl(option, arg2, arg3, 0, 0) != 0:
        code = ctypes.get_errno()
        raise OSError(code, f"prctl({option}): {os.strerror(code)}")


def no_new_privs() -> None:
    """Required before an unprivileged seccomp filter or Landlock domain; no setuid program gains anything after."""
    _prctl(_libc(), PR_SET_NO_NEW_PRIVS, 1)


def install_seccomp(arch: Arch) -> None:
    """Install the filter on the calling thread (and the threads it starts later). Cannot be undone."""
    no_new_privs()
    program = ctypes.create_string_buffer(seccomp_program(arch))
    prog = _SockFprog(len(program.raw) // 8, ctypes.addressof(program))
    _prctl(_libc(), PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.addressof(prog))


# --- Landlock -----------------------------------------------------------------------------------

LANDLOCK_CREATE_RULESET_VERSION = 1
LANDLOCK_RULE_PATH_BENEATH = 1
FS_EXECUTE, FS_WRITE_FILE, FS_READ_FILE, FS_READ_DIR = 1 << 0, 1 << 1, 1 << 2, 1 << 3
FS_TRUNCATE, FS_IOCTL_DEV = 1 << 14, 1 << 15
NET_BIND_TCP, NET_CONNECT_TCP = 1 << 0, 1 << 1
SCOPE_ABSTRACT_UNIX_SOCKET, SCOPE_SIGNAL = 1 << 0, 1 << 1
FILE_RIGHTS = (
    FS_EXECUTE | FS_WRITE_FILE | FS_READ_FILE | FS_TRUNCATE | FS_IOCTL_DEV
)  # the only ones a rule on a file may grant


def handled_fs(abi: int) -> int:
    """Every filesystem right the kernel's ABI knows: what is handled and not granted is refused."""
    if abi >= 5:
        return (1 << 16) - 1  # + IOCTL_DEV
    if abi >= 3:
        return (1 << 15) - 1  # + TRUNCATE
    if abi == 2:
        return (1 << 14) - 1  # + REFER
    return (1 << 13) - 1


def ruleset_attr(abi: int) -> bytes:
    """``struct landlock_ruleset_attr`` as long as this ABI knows it (the kernel refuses unknown trailing fields)."""
    net = NET_BIND_TCP | NET_CONNECT_TCP if abi >= 4 else 0
    scoped = SCOPE_ABSTRACT_UNIX_SOCKET | SCOPE_SIGNAL if abi >= 6 else 0
    size = 8 if abi < 4 else 16 if abi < 6 else 24
    return struct.pack("=QQQ", handled_fs(abi), net, scoped)[:size]


def path_beneath(allowed: int, fd: int) -> bytes:
    return struct.pack("=Qi", allowed, fd)  # struct landlock_path_beneath_attr is packed: 12 bytes


# Files and directories a worker reads after it is locked, besides its interpreter and libraries:
# the dynamic loader's cache (a lazy dlopen), the local time zone, the CPU list (os.cpu_count,
# FFmpeg's thread count), its own /proc entries, and the harmless devices.
SYSTEM_READS = (
    "/etc/ld.so.cache",
    "/etc/localtime",
    "/sys/devices/system/cpu",
    "/dev/null",
    "/dev/zero",
    "/dev/urandom",
    "/proc/self",
    "/proc/thread-self",
)


def _too_wide(path: str, home: str) -> bool:
    """A directory whose subtree holds the user's files: never granted to satisfy the interpreter."""
    return path == "/" or path == home or home.startswith(path.rstrip("/") + "/")


def worker_paths(roots: Iterable[str], maps: str = "/proc/self/maps") -> list[str]:
    """What a locked worker may read: the media roots, then its own needs (interpreter, import path, the
    directories of the libraries mapped now, SYSTEM_READS); real paths, each once, never / or the home
    directory or above it (a ``PYTHONPATH=~`` must not open the home)."""
    home = os.path.realpath(os.path.expanduser("~"))
    candidates = list(roots) + [sys.prefix, sys.exec_prefix, sys.base_prefix, sys.base_exec_prefix, *sys.path]
    try:
        with open(maps) as lines:
            for line in lines:
                parts = line.split(maxsplit=5)
                if len(parts) == 6 and parts[5].startswith("/"):
                    candidates.append(os.path.dirname(parts[5].rstrip("\n").removesuffix(" (deleted)")))
    except OSError:
        pass  # no /proc: the interpreter's own directories still cover the extension modules
    candidates += SYSTEM_READS
    kept: list[str] = []
    for candidate in candidates:
        if not candidate:
            continue
        real = os.path.realpath(candidate)
        if real not in kept and not _too_wide(real, home) and os.path.exists(real):
            kept.append(real)
    return kept


class LandlockUnavailable(Exception):
    pass


def landlock_abi(arch: Arch | None = None) -> int:
    """The kernel's Landlock ABI version; LandlockUnavailable says why there is none."""
    arch = arch or current_arch()
    if arch is None:
        raise LandlockUnavailable(f"no system call table for {platform.machine()}")
    libc = _libc()
    libc.syscall.restype = ctypes.c_long
    abi = libc.syscall(
        ctypes.c_long(arch.syscalls["landlock_create_ruleset"]),
        None,
        ctypes.c_size_t(0),
        ctypes.c_uint32(LANDLOCK_CREATE_RULESET_VERSION),
    )
    if abi < 0:
        code = ctypes.get_errno()
        why = {
            errno.ENOSYS: "the kernel has no Landlock (before 5.13, or built without it)",
            errno.EOPNOTSUPP: "Landlock is built in but not enabled (lsm= boot parameter)",
            errno.EPERM: "its system calls are refused by a filter around the daemon (a unit's SystemCallFilter=)",
        }.get(code, os.strerror(code))
        raise LandlockUnavailable(why)
    return int(abi)


def _restrict(arch: Arch, abi: int, rules: list[tuple[str, int]]) -> None:
    libc = _libc()
    libc.syscall.restype = ctypes.c_long
    attr = ruleset_attr(abi)
    ruleset = libc.syscall(
        ctypes.c_long(arch.syscalls["landlock_create_ruleset"]), attr, ctypes.c_size_t(len(attr)), ctypes.c_uint32(0)
    )
    if ruleset < 0:
        code = ctypes.get_errno()
        raise OSError(code, f"landlock_create_ruleset: {os.strerror(code)}")
    try:
        handled = handled_fs(abi)
        for path, allowed in rules:
            try:
                fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
            except OSError:
                continue  # gone since it was listed: nothing to grant
            try:
                if not stat.S_ISDIR(os.fstat(fd).st_mode):
                    allowed &= FILE_RIGHTS
                rule = path_beneath(allowed & handled, fd)
                if (
                    libc.syscall(
                        ctypes.c_long(arch.syscalls["landlock_add_rule"]),
                        ctypes.c_int(ruleset),
                        ctypes.c_int(LANDLOCK_RULE_PATH_BENEATH),
                        rule,
                        ctypes.c_uint32(0),
                    )
                    != 0
                ):
                    code = ctypes.get_errno()
                    raise OSError(code, f"landlock_add_rule({path!r}): {os.strerror(code)}")
            finally:
                os.close(fd)
        no_new_privs()
        if (
            libc.syscall(
                ctypes.c_long(arch.syscalls["landlock_restrict_self"]), ctypes.c_int(ruleset), ctypes.c_uint32(0)
            )
            != 0
        ):
            code = ctypes.get_errno()
            raise OSError(code, f"landlock_restrict_self: {os.strerror(code)}")
    finally:
        os.close(ruleset)


def lock_filesystem(arch: Arch, abi: int, roots: Iterable[str]) -> list[str]:
    """Restrict the calling thread (and threads it starts later) to reading ``worker_paths(roots)``; returns them."""
    paths = worker_paths(roots)
    _restrict(arch, abi, [(path, FS_READ_FILE | FS_READ_DIR) for path in paths])
    return paths


FS_REMOVE_DIR, FS_REMOVE_FILE, FS_MAKE_DIR, FS_MAKE_REG = 1 << 4, 1 << 5, 1 << 7, 1 << 8


def lock_filesystem_writing(arch: Arch, abi: int, roots: Iterable[str], writable: str) -> list[str]:
    """As ``lock_filesystem``, plus reading and writing files and directories under ``writable`` (the proxy
    maker's store, proxy/maker.py): no exec, no symlink, device or socket made anywhere."""
    paths = worker_paths(roots)
    write = (
        FS_READ_FILE
        | FS_READ_DIR
        | FS_WRITE_FILE
        | FS_TRUNCATE
        | FS_REMOVE_DIR
        | FS_REMOVE_FILE
        | FS_MAKE_DIR
        | FS_MAKE_REG
    )
    _restrict(arch, abi, [(path, FS_READ_FILE | FS_READ_DIR) for path in paths] + [(writable, write)])
    return paths


def lock_thread_out(arch: Arch, abi: int) -> None:
    """The calling thread loses every filesystem right (the orphan guard: it only watches its parent)."""
    _restrict(arch, abi, [])


@dataclass
class Status:
    """What a worker could apply, as it tells the daemon (``/health`` "sandbox", the ``sandbox`` event)."""

    seccomp: bool = False
    landlock: bool = False
    landlock_abi: int = 0
    why: str = ""

    def as_dict(self) -> dict[str, object]:
        return {"seccomp": self.seccomp, "landlock": self.landlock, "landlock_abi": self.landlock_abi, "why": self.why}


def confine_process() -> tuple[Arch | None, Status]:
    """Start-up half, on the main thread before any thread exists: seccomp, and probe Landlock for later."""
    status = Status()
    arch = current_arch()
    if arch is None:
        status.why = (
            f"no sandbox for a {platform.machine()} {'64' if sys.maxsize > 2**32 else '32'}-bit interpreter "
            f"(system call tables: 64-bit x86_64, aarch64)"
        )
        return None, status
    reasons = []
    try:
        install_seccomp(arch)
        status.seccomp = True
    except OSError as exc:
        reasons.append(f"seccomp: {exc.strerror or exc}")
    try:
        status.landlock_abi = landlock_abi(arch)
        status.landlock = True
    except LandlockUnavailable as exc:
        reasons.append(f"landlock: {exc}")
    status.why = "; ".join(reasons)
    return arch, status
