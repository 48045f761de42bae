"""Unit tests of flipedit_previewd.render."""
