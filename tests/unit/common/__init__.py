"""Unit tests of flipedit_previewd.common."""
