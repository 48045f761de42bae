"""The built-in demo project and the fixture writers (PyAV, Pillow): never imported by the daemon's serving path."""
