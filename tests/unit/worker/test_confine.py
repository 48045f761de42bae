"""The sandbox's pure parts: the seccomp program run through a classic-BPF interpreter, the Landlock
attribute bytes per ABI, the worker's path list; and the worker -> daemon wire format against garbage.

The BPF program is checked by running it, not by comparing bytes: the interpreter below follows the
kernel's semantics for the few instructions the program uses, on ``struct seccomp_data`` built here.
"""

from __future__ import annotations

import errno
import json
import os
import pickle
import struct
import sys
from pathlib import Path

import pytest

from flipedit_previewd.worker import confine, wire

X86, ARM = confine.ARCHES["x86_64"], confine.ARCHES["aarch64"]
ALLOW = confine.SECCOMP_RET_ALLOW
EPERM = confine.SECCOMP_RET_ERRNO | errno.EPERM
CLONE_THREAD_FLAGS = 0x003D0F00  # what glibc's pthread_create passes (CLONE_VM|CLONE_FS|CLONE_FILES|CLONE_SIGHAND|CLONE_THREAD|...)
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
    assert confine.path_beneath(confine.FS_READ_FILE, 7) == struct.pack("<Qi", 4, 7) and len(confine.path_beneath(0, 0)) == 12


def test_worker_paths_hold_the_roots_and_the_interpreter_never_the_home(tmp_path: Path) -> None:
    root = tmp_path / "media"
    root.mkdir()
    maps = tmp_path / "maps"
    home = os.path.realpath(os.path.expanduser("~"))
    maps.write_text(f"7f00-7f01 r-xp 0 08:01 1 {sys.executable}\n7f01-7f02 rw-p 0 00:00 0 \n"
                    f"7f02-7f03 r--p 0 08:01 2 {home}/x.so\n7f03-7f04 r--p 0 08:01 3 /x.so (deleted)\n")
    paths = confine.worker_paths([str(root), "/", home], str(maps))
    assert paths[0] == str(root)
    assert "/" not in paths and home not in paths and os.path.dirname(home) not in paths
    assert os.path.realpath(sys.base_prefix) in paths and os.path.realpath(os.path.dirname(sys.executable)) in paths
    assert "/etc" not in paths and "/etc/ld.so.cache" in paths and len(paths) == len(set(paths))


# --- the wire format ------------------------------------------------------------------------------

JPEG = b"\xff\xd8\xff\xe0" + b"x" * 100


def ok_reply(**meta: object) -> bytes:
    fields = {"kind": "ok", "job_id": 5, "render_ms": 1.5, "content_type": "image/jpeg", "problems": [], "clips": 1, **meta}
    data = json.dumps(fields).encode()
    return wire.HEADER.pack(wire.MAGIC, wire.VERSION, len(data), len(JPEG)) + data + JPEG


def test_a_reply_round_trips() -> None:
    sent = wire.Reply("ok", 5, 12.5, "image/jpeg", JPEG, [("/m/a.mp4", "file not found")], 3,
                      attempts=[{"what": "exec /bin/sh", "refused": True, "error": "EPERM"}])
    got = wire.decode(wire.encode(sent), 5, "image/jpeg", wire.body_limit(64, 36))
    assert (got.kind, got.job_id, got.render_ms, got.body, got.problems, got.clips) == ("ok", 5, 12.5, JPEG, [("/m/a.mp4", "file not found")], 3)
    assert got.attempts == sent.attempts
    hello = wire.decode(wire.encode(wire.Reply("hello", sandbox=confine.Status(True, False, 0, "no").as_dict())))
    assert hello.sandbox == {"seccomp": True, "landlock": False, "landlock_abi": 0, "why": "no"}
    assert wire.decode(wire.encode(wire.Reply("error", 5, message="ValueError: x")), 5).message == "ValueError: x"


GARBAGE = {
    "pickle": pickle.dumps(("ok", 5, b"", 1.0)),  # the old format: never unpickled
    "empty": b"",
    "bad magic": b"XXXX" + ok_reply()[4:],
    "truncated": ok_reply()[:-1],
    "trailing": ok_reply() + b"\0",
    "not json": wire.HEADER.pack(wire.MAGIC, 1, 3, 0) + b"{{{",
    "deep json": wire.HEADER.pack(wire.MAGIC, 1, 200_000, 0) + b"[" * 100_000 + b"]" * 100_000,
    "not utf-8": wire.HEADER.pack(wire.MAGIC, 1, 2, 0) + b"\xff\xfe",
    "a list": wire.HEADER.pack(wire.MAGIC, 1, 2, 0) + b"[]",
    "other job": ok_reply(job_id=6),
    "job id a bool": ok_reply(job_id=True),
    "job id negative": ok_reply(job_id=-1),
    "render_ms NaN": ok_reply(render_ms=float("nan")),
    "render_ms text": ok_reply(render_ms="1"),
    "other content type": ok_reply(content_type="image/png"),
    "unknown kind": ok_reply(kind="shell"),
    "problems not pairs": ok_reply(problems=[["a"]]),
    "problem not text": ok_reply(problems=[["a", 1]]),
    "too many problems": ok_reply(problems=[["a", "b"]] * (wire.MAX_PROBLEMS + 1)),
    "huge text": ok_reply(problems=[["a" * (wire.MAX_TEXT + 1), "b"]]),
    "clips a float": ok_reply(clips=1.0),
    "attempts not a list": ok_reply(attempts={"what": "x"}),
    "hello without status": wire.encode(wire.Reply("hello")),
}


@pytest.mark.parametrize("name", GARBAGE)
def test_garbage_is_a_wire_error_never_an_other_exception(name: str) -> None:
    with pytest.raises(wire.WireError):
        wire.decode(GARBAGE[name], 5 if name != "hello without status" else None, "image/jpeg")


def test_bodies_are_held_to_their_output_size_and_type() -> None:
    big = wire.encode(wire.Reply("ok", 5, 1.0, "image/jpeg", JPEG + b"x" * 10_000))
    with pytest.raises(wire.WireError):
        wire.decode(big, 5, "image/jpeg", body_limit=1000)
    not_an_image = wire.encode(wire.Reply("ok", 5, 1.0, "image/jpeg", b"#!/bin/sh\n"))
    with pytest.raises(wire.WireError):
        wire.decode(not_an_image, 5, "image/jpeg")
    with pytest.raises(wire.WireError):  # an error carries no image
        wire.decode(wire.encode(wire.Reply("error", 5, body=JPEG, message="x")), 5)


def test_a_worker_covers_only_roots_under_its_own() -> None:
    from flipedit_previewd.render.pool import covers

    assert covers(("/m/a",), ("/m/a", "/m/a/sub"))
    assert not covers(("/m/a",), ("/m/ab",))  # a sibling with the same prefix is another directory
    assert not covers(("/m/a",), ("/m/a", "/m/b"))
    assert covers((), ()) and not covers((), ("/m/a",))  # confined to no roots: a project needs a fresh worker
