"""Shared leaves: errors, text escaping, percentiles, read-only SQLite, the journal, metrics. No knowledge of HTTP or "
"rendering."""
