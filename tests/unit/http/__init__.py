"""Unit tests of flipedit_previewd.http."""
