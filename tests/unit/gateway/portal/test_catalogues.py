"""Every text of the patient's page is in the message catalogues, translated in fr, de and it, and the
compiled catalogues are those of the sources (`make portal-messages`)."""

import re
from pathlib import Path

import pytest
from babel.messages.extract import extract_from_dir
from babel.messages.mofile import read_mo
from babel.messages.pofile import read_po

import gateway.portal
from gateway.pages.i18n import LANGUAGES, choose

PORTAL = Path(gateway.portal.__file__).parent
SHARED = PORTAL.parent / "pages"  # the layout both pages share: its texts are in each page's catalogues
LOCALES = PORTAL / "locales"
METHODS = [("**.py", "python"), ("**/templates/**.html", "jinja2")]
KEYWORDS = {"_": None, "gettext": None, "ngettext": (1, 2), "N_": None}


def extracted_ids() -> set:
    found = set()
    for directory in (PORTAL, SHARED):
        for _file, _line, message, _comments, _context in extract_from_dir(
                str(directory), METHODS, keywords=KEYWORDS, options_map={"**/templates/**.html": {
                    "extensions": "jinja2.ext.i18n"}}):
            found.add(message if isinstance(message, str) else tuple(message))
    return found


def catalogue(lang: str):
    with open(LOCALES / lang / "LC_MESSAGES" / "messages.po", "rb") as source:
        return read_po(source, locale=lang)


@pytest.mark.parametrize("lang", LANGUAGES)
def test_each_catalogue_holds_every_message_of_the_code(lang):
    ids = {m.id if isinstance(m.id, str) else tuple(m.id) for m in catalogue(lang) if m.id}
    assert ids == extracted_ids()


@pytest.mark.parametrize("lang", ["fr", "de", "it"])
def test_every_message_is_translated(lang):
    untranslated = [m.id for m in catalogue(lang) if m.id and not all(m.string if isinstance(m.string, tuple)
                                                                      else [m.string])]
    assert untranslated == []


@pytest.mark.parametrize("lang", LANGUAGES)
def test_the_compiled_catalogue_is_the_source(lang):
    with open(LOCALES / lang / "LC_MESSAGES" / "messages.mo", "rb") as compiled:
        mo = {_key(m.id): _key(m.string) for m in read_mo(compiled) if m.id}
    po = {_key(m.id): _key(m.string) for m in catalogue(lang) if m.id}
    assert mo == {k: v for k, v in po.items() if v}


@pytest.mark.parametrize("template", sorted(p.name for p in (PORTAL / "templates").glob("*.html")))
def test_templates_show_no_text_outside_the_catalogues(template):
    source = (PORTAL / "templates" / template).read_text(encoding="utf-8")
    text = re.sub(r"\{\{.*?\}\}|\{%.*?%\}|\{#.*?#\}", " ", source, flags=re.S)
    text = re.sub(r"<[^>]*>", " ", text, flags=re.S)
    words = re.findall(r"[A-Za-zÀ-ÿ]{2,}", text)
    assert words == []


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


def _key(value):
    return value if isinstance(value, str) else tuple(value)
