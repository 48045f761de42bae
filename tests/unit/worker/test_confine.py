"""The sandbox's pure parts: the seccomp program run through a classic-BPF interpreter, the Landlock
attribute bytes per ABI, the worker's path list (the wire format's own tests: test_wire.py).

The BPF program is checked by running it, not by comparing bytes: the interpreter below follows the
kernel's semantics for the few instructions the program uses, on ``struct seccomp_data`` built here.
"""

from __future__ import annotations

import errno
import os
import struct
import sys
from pathlib import Path

import pytest

from flipedit_previewd.worker import confine

X86, ARM = confine.ARCHES["x86_64"], confine.ARCHES["aarch64"]
ALLOW = confine.SECCOMP_RET_ALLOW
EPERM = confine.SECCOMP_RET_ERRNO | errno.EPERM
CLONE_THREAD_FLAGS = (
    0x003D0F00  # what glibc's pthread_create passes (CLONE_VM|CLONE_FS|CLONE_FILES|CLONE_SIGHAND|CLONE_THREAD|...)
)
CLONE_NEWUSER = 0x10000000


def run_bpf(program: bytes, nr: int, arch: int, arg0: int = 0) -> int:
    """The action the filter returns for one system call (seccomp_data: nr, arch, ip, args[6])."""
    data = struct.pack("=iIQ6Q", nr, arch, 0, arg0, 0, 0, 0, 0, 0)
    insns = [struct.unpack_from("=HBBI", program, i) for i in range(0, len(program), 8)]
    acc, pc = 0, 0
    for _ in range(len(insns) + 1):  # no backward jumps in classic BPF: each instruction at most once
        code, jt, jf, k = insns[pc]
        if code == confine.BPF_LD_W_ABS:
            acc = struct.unpack_from("=I", data, k)[0]
            pc += 1
        elif code == confine.BPF_RET_K:
            return k
        elif code in (confine.BPF_JEQ_K, confine.BPF_JGE_K, confine.BPF_JSET_K):
            taken = {confine.BPF_JEQ_K: acc == k, confine.BPF_JGE_K: acc >= k, confine.BPF_JSET_K: bool(acc & k)}[code]
            pc += 1 + (jt if taken else jf)
        else:
            raise AssertionError(f"instruction {code:#x} not expected in the program")
    raise AssertionError("ran off the program")


@pytest.mark.parametrize("arch", [X86, ARM], ids=lambda a: a.name)
def test_the_filter_refuses_network_exec_and_cross_process_calls_and_allows_the_rest(arch: confine.Arch) -> None:
    program = confine.seccomp_program(arch)
    assert len(program) % 8 == 0 and len(program) // 8 < 4096  # BPF_MAXINSNS
    for name in confine.DENIED:
        assert run_bpf(program, arch.syscalls[name], arch.audit) == EPERM, name
    denied = {arch.syscalls[n] for n in confine.DENIED} | {arch.syscalls["clone"], arch.syscalls["clone3"]}
    for nr in set(range(0, 460)) - denied:  # read, openat, mmap, futex, ... everything a decoder does
        assert run_bpf(program, nr, arch.audit) == ALLOW, nr
    clone = arch.syscalls["clone"]
    assert run_bpf(program, clone, arch.audit, CLONE_THREAD_FLAGS) == ALLOW  # threads and fork: yes
    assert run_bpf(program, clone, arch.audit, 17) == ALLOW  # fork(): SIGCHLD only
    assert run_bpf(program, clone, arch.audit, CLONE_NEWUSER | 17) == EPERM  # a user namespace: no
    # clone3's flags are in memory the filter cannot read: ENOSYS makes glibc fall back to clone
    assert run_bpf(program, arch.syscalls["clone3"], arch.audit) == confine.SECCOMP_RET_ERRNO | errno.ENOSYS


def test_another_abi_is_killed_and_x32_calls_refused() -> None:
    program = confine.seccomp_program(X86)
    assert run_bpf(program, 11, 0x40000003) == confine.SECCOMP_RET_KILL_PROCESS  # i386 execve via int 0x80
    assert run_bpf(program, confine.X32_SYSCALL_BIT | 59, X86.audit) == EPERM  # x32 execve
    assert run_bpf(program, confine.X32_SYSCALL_BIT | 0, X86.audit) == EPERM
    assert run_bpf(confine.seccomp_program(ARM), 0, X86.audit) == confine.SECCOMP_RET_KILL_PROCESS


def test_both_tables_name_every_call_the_filter_refers_to() -> None:
    for arch in (X86, ARM):
        assert set(confine.DENIED) | {"clone", "clone3"} <= set(arch.syscalls)
        assert len(set(arch.syscalls.values())) == len(arch.syscalls)  # no number given twice


def test_landlock_attributes_follow_the_abi() -> None:
    # ABI 1: 13 filesystem rights; 2: + REFER; 3: + TRUNCATE; 4: + TCP; 5: + IOCTL_DEV; 6: + scopes
    assert [len(confine.ruleset_attr(abi)) for abi in range(1, 8)] == [8, 8, 8, 16, 16, 24, 24]
    assert [confine.handled_fs(abi).bit_length() for abi in range(1, 8)] == [13, 14, 15, 15, 16, 16, 16]
    fs, net, scoped = struct.unpack("=QQQ", confine.ruleset_attr(7))
    assert fs == (1 << 16) - 1 and net == 3 and scoped == 3
    assert struct.unpack("=Q", confine.ruleset_attr(1))[0] & confine.FS_EXECUTE  # exec handled, so refused
    assert (
        confine.path_beneath(confine.FS_READ_FILE, 7) == struct.pack("<Qi", 4, 7)
        and len(confine.path_beneath(0, 0)) == 12
    )


def test_worker_paths_hold_the_roots_and_the_interpreter_never_the_home(tmp_path: Path) -> None:
    root = tmp_path / "media"
    root.mkdir()
    maps = tmp_path / "maps"
    home = os.path.realpath(os.path.expanduser("~"))
    maps.write_text(
        f"7f00-7f01 r-xp 0 08:01 1 {sys.executable}\n7f01-7f02 rw-p 0 00:00 0 \n"
        f"7f02-7f03 r--p 0 08:01 2 {home}/x.so\n7f03-7f04 r--p 0 08:01 3 /x.so (deleted)\n"
    )
    paths = confine.worker_paths([str(root), "/", home], str(maps))
    assert paths[0] == str(root)
    assert "/" not in paths and home not in paths and os.path.dirname(home) not in paths
    assert os.path.realpath(sys.base_prefix) in paths and os.path.realpath(os.path.dirname(sys.executable)) in paths
    assert "/etc" not in paths and "/etc/ld.so.cache" in paths and len(paths) == len(set(paths))
