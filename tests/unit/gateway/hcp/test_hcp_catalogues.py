"""The physicians' page reads its own catalogues. The rules every page's catalogues follow (every text
in them, translated, placeholders kept, compiled from the sources) are tests/unit/gateway/pages/
test_page_catalogues.py, for this page and the patient's."""

from pathlib import Path

import gateway.hcp
from gateway.pages.i18n import translations

HCP = Path(gateway.hcp.__file__).parent
LOCALES = HCP / "locales"


def test_the_pages_read_their_own_catalogues():
    assert translations("de", LOCALES).gettext("Find a patient") == "Patientin / Patienten finden"
    assert translations("de", HCP.parent / "portal" / "locales").gettext("Find a patient") == "Find a patient"
