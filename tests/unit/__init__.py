"""Unit tests, one folder per package of flipedit_previewd."""
