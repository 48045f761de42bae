"""Every MESSAGE_ID the daemon sends has a catalog entry, and the catalog has no stale ones."""

from __future__ import annotations

import re

from flipedit_previewd.common.journal import MESSAGE_IDS
from tests.support.helpers import ROOT


def test_catalog_and_code_agree() -> None:
    text = (ROOT / "systemd/flipedit-previewd.catalog").read_text()
    catalog = re.findall(r"^-- ([0-9a-f]{32})$", text, flags=re.M)
    assert len(catalog) == len(set(catalog))
    assert set(catalog) == set(MESSAGE_IDS.values())
    for block in text.split("\n-- ")[1:]:
        assert "\nSubject: " in block and "\nDefined-By: flipedit-previewd" in block
