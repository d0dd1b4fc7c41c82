"""page_idle on a kernel without it (the host); the real checks are in test_guest_facilities."""

from __future__ import annotations

import os

import pytest

from damond.errors import DamonError
from damond.platform.page_idle import BITMAP_PATH, PageIdleBitmap, available

absent = pytest.mark.skipif(os.path.exists(BITMAP_PATH), reason="this kernel has page_idle")


@absent
def test_absent_bitmap_is_reported_with_the_config_option():
    ok, reason = available()
    assert not ok and "CONFIG_IDLE_PAGE_TRACKING" in reason
    with pytest.raises(DamonError) as info:
        PageIdleBitmap()
    assert info.value.errno_name == "ENOENT"
    assert "CONFIG_IDLE_PAGE_TRACKING" in info.value.why
