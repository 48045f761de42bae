"""Unit tests of flipedit_previewd.config."""
