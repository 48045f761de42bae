"""The built-in demo project and the fixture writers (PyAV, Pillow, numpy): never imported by the daemon's serving path."""
