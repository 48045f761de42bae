"""Unit tests of flipedit_previewd.timeline."""
