"""Unit tests of flipedit_previewd.ctl."""
