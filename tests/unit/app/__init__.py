"""Unit tests of flipedit_previewd.app."""
