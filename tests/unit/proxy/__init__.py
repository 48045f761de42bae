"""Unit tests of flipedit_previewd.proxy."""
