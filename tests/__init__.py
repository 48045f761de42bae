"""The test layers: unit (mirroring the package), integration, system (a real systemd in a namespace sandbox), "
"booted."""
