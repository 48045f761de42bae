"""Integration tests: real daemons on real sockets, real SQLite and media."""
