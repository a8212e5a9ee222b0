"""The browser each test drives: a fresh headless Chromium against the module's `server` fixture."""

import pytest

from browser.portal_driver import Browser


@pytest.fixture
def browser(server):
    opened = Browser(server)
    yield opened
    opened.quit()
