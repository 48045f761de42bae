"""Unit tests of flipedit_previewd.sd."""
