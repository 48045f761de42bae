"""FlipEdit preview daemon: timeline frames as JPEG over HTTP, run by systemd."""

__version__ = "0.1.0"
