"""Unit tests of flipedit_previewd.worker."""
