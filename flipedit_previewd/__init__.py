"""FlipEdit preview daemon: timeline frames as JPEG over HTTP, run by systemd.

Importing the package (or its client, ``flipedit_previewd.client``) has no side effect: libgcrypt
is set up by the processes that may load PyAV, at their entry points (``common/gcrypt.py``).
"""

__version__ = "0.1.0"
