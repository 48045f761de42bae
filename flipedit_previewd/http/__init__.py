"""The HTTP side: the sans-IO protocol, one connection, access control, listening and the lifecycle."""
