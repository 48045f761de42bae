"""The token file: where the daemon writes it and where its clients find it.

Shared by the daemon (``http.access`` writes it at start) and its clients (``client``, ``previewctl``
read it), so that a client never imports the server's HTTP side to learn a file name.
"""

from __future__ import annotations

import os
import secrets
import stat
from collections.abc import Mapping

TOKEN_DIR = "flipedit-preview"
TOKEN_NAME = "token"


def token_path(environ: Mapping[str, str], configured: str = "") -> str:
    """Where the token lives: ``token_file``, else systemd's RuntimeDirectory, else "
    "$XDG_RUNTIME_DIR/flipedit-preview."""
    if configured:
        return os.path.expanduser(configured)
    runtime_directory = environ.get("RUNTIME_DIRECTORY", "").split(":")[0]
    if runtime_directory:
        return os.path.join(runtime_directory, TOKEN_NAME)
    base = environ.get("XDG_RUNTIME_DIR", "")
    return os.path.join(base, TOKEN_DIR, TOKEN_NAME) if base else ""


def runtime_dir(environ: Mapping[str, str]) -> str:
    """$XDG_RUNTIME_DIR, else where pam_systemd would put it (a root console, ssh without a session)."""
    return environ.get("XDG_RUNTIME_DIR", "") or f"/run/user/{os.getuid()}"


def token_candidates(environ: Mapping[str, str]) -> list[str]:
    """Where clients look for the token: the user daemon's, then the system unit's."""
    found = []
    base = runtime_dir(environ)
    if base:
        found.append(os.path.join(base, TOKEN_DIR, TOKEN_NAME))
    found.append(os.path.join("/run", TOKEN_DIR, "auth", TOKEN_NAME))  # the system unit's RuntimeDirectory
    return found


def write_token(path: str) -> str:
    """A fresh random token in a new 0600 file (replaced atomically, never through a symlink)."""
    directory = os.path.dirname(path)
    os.makedirs(directory, mode=0o700, exist_ok=True)
    token = secrets.token_urlsafe(32)
    tmp = f"{path}.{os.getpid()}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        os.write(fd, token.encode() + b"\n")
    finally:
        os.close(fd)
    os.replace(tmp, path)
    return token


def read_token(environ: Mapping[str, str]) -> str:
    """The token if one of ours is readable: a regular file owned by us, not readable by others."""
    for path in token_candidates(environ):
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError:
            continue
        try:
            st = os.fstat(fd)
            if not (
                stat.S_ISREG(st.st_mode)
                and st.st_uid in (os.getuid(), st.st_uid if os.getuid() == 0 else -1)
                and st.st_mode & 0o077 == 0
            ):
                continue
            text = os.read(fd, 256).decode("ascii", "replace").strip()
        finally:
            os.close(fd)
        if text:
            return text
    return ""
