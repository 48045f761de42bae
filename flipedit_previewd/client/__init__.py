"""A client of the daemon, importable by the editor's tools without loading any server module."""
