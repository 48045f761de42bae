"""Booted tests: a booted systemd in a container, an unprivileged user's manager."""
