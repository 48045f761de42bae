"""FlipEdit preview daemon: timeline frames as JPEG over HTTP, run by systemd."""

from flipedit_previewd.common.gcrypt import init_without_secure_memory

__version__ = "0.1.0"

# Before any module of the package imports PyAV (whose FFmpeg loads libssh-gcrypt): see gcrypt.py.
init_without_secure_memory()
