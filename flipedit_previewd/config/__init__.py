"""The one configuration schema (flags, environment, TOML, docs) and its value parsers."""
