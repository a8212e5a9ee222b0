"""The pages' languages: French and German first (Valais is bilingual), Italian, English.

Every text of a page is in that page's message catalogues (`gateway/portal/locales/`,
`gateway/hcp/locales/`: gettext, compiled by Babel, `make portal-messages` or `make hcp-messages`),
which also hold the texts of the layout the pages share; the language comes from the session (the switcher), else from
`Accept-Language`, else French.
"""

from __future__ import annotations

import functools
from pathlib import Path

from babel import Locale, dates
from babel.core import negotiate_locale
from babel.support import Translations

LANGUAGES = ("fr", "de", "it", "en")
DEFAULT = "fr"
NAMES = {"fr": "Français", "de": "Deutsch", "it": "Italiano", "en": "English"}


def N_(message: str) -> str:
    """Marks a message for the catalogues where it is defined; it is translated where it is shown."""
    return message


def accepted(header: str | None) -> list[str]:
    """The languages of an Accept-Language header, most wanted first (q=0 dropped, bad parts ignored)."""
    weighted = []
    for position, part in enumerate((header or "").split(",")):
        tag, _, params = part.strip().partition(";")
        quality = 1.0
        if params.strip().startswith("q="):
            try:
                quality = float(params.strip()[2:])
            except ValueError:
                continue
        if tag and quality > 0:
            weighted.append((-quality, position, tag.strip().replace("_", "-")))
    return [tag for _, _, tag in sorted(weighted)]


def choose(session_lang: str | None, accept_language: str | None) -> str:
    if session_lang in LANGUAGES:
        return session_lang
    wanted = [tag.split("-")[0].lower() for tag in accepted(accept_language)]
    return negotiate_locale(wanted, list(LANGUAGES)) or DEFAULT


@functools.cache
def translations(lang: str, locales: Path) -> Translations:
    """The catalogue of `lang` under a page's `locales` directory."""
    return Translations.load(str(locales), [lang], domain="messages")


def format_date(value, lang: str) -> str:
    return dates.format_date(value, format="medium", locale=Locale.parse(lang))


def format_datetime(value, lang: str) -> str:
    # The trail is read in Valais: Swiss time, whatever the server's zone.
    return dates.format_datetime(value, format="medium", locale=Locale.parse(lang),
                                 tzinfo=dates.get_timezone("Europe/Zurich"))
