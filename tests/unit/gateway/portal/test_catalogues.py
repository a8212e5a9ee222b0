"""The patient's page's own language rules: the language chosen, and its French wording. The rules every
page's catalogues follow (every text in them, translated, placeholders kept, no article before a name,
compiled from the sources) are tests/unit/gateway/pages/test_page_catalogues.py, for this page and the
physicians'."""

import pytest

from gateway.pages.i18n import choose
from unit.gateway.pages.test_page_catalogues import catalogue


@pytest.mark.parametrize("session, header, expected", [
    ("de", "fr-CH", "de"),  # the switcher wins
    ("", "de-CH,de;q=0.9,en;q=0.5", "de"),
    ("", "it-CH;q=0.8, en;q=0.9", "en"),
    ("", "rm-CH, it;q=0.5", "it"),
    ("", "ja, zh;q=0.5", "fr"),  # Valais: French when nothing fits
    ("", "de;q=0, en", "en"),
    ("", "garbage;;q=x", "fr"),
    ("xx", None, "fr"),
])
def test_the_language_comes_from_the_session_then_accept_language(session, header, expected):
    assert choose(session, header) == expected


def test_the_trail_filter_is_a_type_in_french_not_a_genre():
    french = {m.id: m.string for m in catalogue("portal", "fr") if isinstance(m.id, str)}
    assert french["Kind"] == "Type" and "Genre" not in french.values()
