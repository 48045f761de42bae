"""System tests: the daemon under a real systemd in a namespace sandbox."""
