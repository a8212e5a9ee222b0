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


# A preposition or article right before a name put in by the page: "Chaque membre de Hôpital" (issue 27
# item 16) where French needs "de l'Hôpital", Italian "dell'Ospedale". A name's article cannot be
# known, so no translation may put one there: the sentences name the thing first ("du groupe « %(who)s »").
BEFORE_A_NAME = {"fr": r"\b(?:de|du|des|à|au|aux|le|la|les)\s+%\(\w+\)s",
                 "it": r"\b(?:di|del|della|a|al|alla|da|dal|il|la|lo)\s+%\(\w+\)s"}
DATES = {"%(end)s", "%(start)s"}  # "jusqu'au %(end)s", "fino al %(end)s": a date takes the article


@pytest.mark.parametrize("lang", sorted(BEFORE_A_NAME))
def test_no_translation_puts_an_article_or_preposition_before_a_name(lang):
    found = []
    for message in catalogue(lang):
        for string in (message.string if isinstance(message.string, tuple) else [message.string]):
            found += [match.group(0) for match in re.finditer(BEFORE_A_NAME[lang], string or "", re.I)
                      if not any(match.group(0).endswith(d) for d in DATES)]
    assert found == []


def test_the_rule_above_catches_the_reported_sentence():
    assert re.search(BEFORE_A_NAME["fr"], "Chaque membre de %(who)s verra vos documents")
    assert not re.search(BEFORE_A_NAME["fr"], "Chaque membre du groupe « %(who)s » verra vos documents")


def test_the_trail_filter_is_a_type_in_french_not_a_genre():
    french = {m.id: m.string for m in catalogue("fr") if isinstance(m.id, str)}
    assert french["Kind"] == "Type" and "Genre" not in french.values()
