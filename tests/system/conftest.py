"""Fixtures of the system layer."""

from deploy import deployed  # noqa: F401  (the fixture, shared by every system test module)
