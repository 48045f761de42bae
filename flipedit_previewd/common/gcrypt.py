"""Initialise libgcrypt without secure memory, before anything else can (no "using insecure memory").

Debian's PyAV links FFmpeg's libavformat, which links libssh-gcrypt (for sftp:// inputs). libssh's
load-time constructor initialises libgcrypt with a secure-memory pool unless the application did
so first; that pool is mlock()ed, the unit's ``SystemCallFilter=~@privileged`` denies mlock
(@memlock is part of @privileged), and libgcrypt prints "Warning: using insecure memory!" to stderr,
i.e. into the journal, once per process (the daemon and every worker). libgcrypt's manual says the
application initialises the library; we do, as the first thing in every process of the daemon
(``__main__.main``, the worker's ``render.pool.child_main``, the demo's writer in ``demo/project.py``),
never at import: someone else's program that imports ``flipedit_previewd.client`` sets up its own
libgcrypt. No secure memory (the daemon holds no secrets; it never uses libgcrypt itself), initialisation
finished, so libssh leaves it alone. Where libgcrypt is absent (a PyAV wheel with its own FFmpeg)
this does nothing. (python-systemd's libsystemd links libgcrypt as well but never initialises it
when writing to the journal: with mlock denied, ``import systemd.journal`` and a ``send`` print nothing.)
"""

from __future__ import annotations

import ctypes

GCRYCTL_DISABLE_SECMEM = 37
GCRYCTL_INITIALIZATION_FINISHED = 38
GCRYCTL_INITIALIZATION_FINISHED_P = 39


def init_without_secure_memory() -> bool:
    """True when this call initialised libgcrypt; False when it is absent or was initialised already."""
    try:
        lib = ctypes.CDLL("libgcrypt.so.20")
    except OSError:
        return False
    lib.gcry_check_version.restype = ctypes.c_char_p
    lib.gcry_check_version.argtypes = [ctypes.c_char_p]
    if lib.gcry_control(GCRYCTL_INITIALIZATION_FINISHED_P, 0):
        return False
    lib.gcry_check_version(None)  # must come first: it initialises the library
    lib.gcry_control(GCRYCTL_DISABLE_SECMEM, 0)
    lib.gcry_control(GCRYCTL_INITIALIZATION_FINISHED, 0)
    return True
