"""Every text of each web page (and of the layout and error page they share) is in that page's message
catalogues, translated in fr, de and it, its placeholders kept, no article before a name put in by the
page, and the compiled catalogues are those of the sources (`make portal-messages`, `make hcp-messages`).
One set of rules for both pages: each page's own checks stay beside it (tests/unit/gateway/portal/
test_catalogues.py, tests/unit/gateway/hcp/test_hcp_catalogues.py)."""

import re
from functools import cache
from pathlib import Path

import pytest
from babel.messages.extract import extract_from_dir
from babel.messages.mofile import read_mo
from babel.messages.pofile import read_po

import gateway.hcp
import gateway.portal
from gateway.pages.i18n import LANGUAGES

PAGES = {"portal": Path(gateway.portal.__file__).parent, "hcp": Path(gateway.hcp.__file__).parent}
SHARED = Path(gateway.portal.__file__).parent.parent / "pages"  # its texts are in each page's catalogues
METHODS = [("**.py", "python"), ("**/templates/**.html", "jinja2")]
KEYWORDS = {"_": None, "gettext": None, "ngettext": (1, 2), "N_": None}
TRANSLATED = ["fr", "de", "it"]


def _key(value):
    return value if isinstance(value, str) else tuple(value)


@cache
def extracted_ids(page: str) -> frozenset:
    found = set()
    for directory in (PAGES[page], SHARED):
        for _file, _line, message, _comments, _context in extract_from_dir(
                str(directory), METHODS, keywords=KEYWORDS, options_map={"**/templates/**.html": {
                    "extensions": "jinja2.ext.i18n"}}):
            found.add(_key(message))
    return frozenset(found)


def catalogue(page: str, lang: str):
    with open(PAGES[page] / "locales" / lang / "LC_MESSAGES" / "messages.po", "rb") as source:
        return read_po(source, locale=lang)


def strings(message) -> list[str]:
    return list(message.string) if isinstance(message.string, tuple) else [message.string]


@pytest.mark.parametrize("page", PAGES)
@pytest.mark.parametrize("lang", LANGUAGES)
def test_each_catalogue_holds_every_message_of_the_code(page, lang):
    assert {_key(m.id) for m in catalogue(page, lang) if m.id} == extracted_ids(page)


@pytest.mark.parametrize("page", PAGES)
@pytest.mark.parametrize("lang", TRANSLATED)
def test_every_message_is_translated(page, lang):
    assert [m.id for m in catalogue(page, lang) if m.id and not all(strings(m))] == []


@pytest.mark.parametrize("page", PAGES)
@pytest.mark.parametrize("lang", TRANSLATED)
def test_every_translation_keeps_its_placeholders(page, lang):
    """A translation that drops or renames %(name)s would fail (or show the wrong value) when rendered."""
    names = re.compile(r"%\((\w+)\)[sd]")
    sources = lambda m: [m.id] if isinstance(m.id, str) else [m.id[1]] * len(strings(m))  # noqa: E731
    wrong = [m.id for m in catalogue(page, lang) if m.id for source, text in zip(sources(m), strings(m))
             if set(names.findall(source)) != set(names.findall(text))]
    assert wrong == []


@pytest.mark.parametrize("page", PAGES)
@pytest.mark.parametrize("lang", LANGUAGES)
def test_the_compiled_catalogue_is_the_source(page, lang):
    with open(PAGES[page] / "locales" / lang / "LC_MESSAGES" / "messages.mo", "rb") as compiled:
        mo = {_key(m.id): _key(m.string) for m in read_mo(compiled) if m.id}
    po = {_key(m.id): _key(m.string) for m in catalogue(page, lang) if m.id}
    assert mo == {k: v for k, v in po.items() if v and v != ("", "")}


TEMPLATES = sorted(f"{page}/{p.name}" for page, directory in (*PAGES.items(), ("pages", SHARED))
                   for p in (directory / "templates").glob("*.html"))


@pytest.mark.parametrize("template", TEMPLATES)
def test_templates_show_no_text_outside_the_catalogues(template):
    page, name = template.split("/")
    source = ((PAGES.get(page) or SHARED) / "templates" / name).read_text(encoding="utf-8")
    text = re.sub(r"\{\{.*?\}\}|\{%.*?%\}|\{#.*?#\}", " ", source, flags=re.S)
    text = re.sub(r"<[^>]*>", " ", text, flags=re.S)
    assert re.findall(r"[A-Za-zÀ-ÿ]{2,}", text) == []


# A preposition or article right before a name put in by the page: "Chaque membre de Hôpital" (issue 27
# item 16) where French needs "de l'Hôpital", Italian "dell'Ospedale". A name's article cannot be
# known, so no translation may put one there: the sentences name the thing first ("du groupe « %(who)s »").
BEFORE_A_NAME = {"fr": r"\b(?:de|du|des|à|au|aux|le|la|les)\s+%\(\w+\)s",
                 "it": r"\b(?:di|del|della|a|al|alla|da|dal|il|la|lo)\s+%\(\w+\)s"}
DATES = {"%(end)s", "%(start)s"}  # "jusqu'au %(end)s", "fino al %(end)s": a date takes the article
# A person's name takes no article ("Documents de Marie Muster", "assistente di Mario Rossi"): the
# placeholders that only ever hold a person's name (the patient, the professional, the signed-in user;
# gateway/hcp/templates and the portal's representative line) are not names of things.
PERSONS = {"%(name)s", "%(professional)s", "%(patient)s"}


@pytest.mark.parametrize("page", PAGES)
@pytest.mark.parametrize("lang", sorted(BEFORE_A_NAME))
def test_no_translation_puts_an_article_or_preposition_before_a_name(page, lang):
    found = [match.group(0) for message in catalogue(page, lang) for string in strings(message)
             for match in re.finditer(BEFORE_A_NAME[lang], string or "", re.I)
             if not any(match.group(0).endswith(d) for d in DATES | PERSONS)]
    assert found == []


def test_the_rule_above_catches_the_reported_sentence():
    assert re.search(BEFORE_A_NAME["fr"], "Chaque membre de %(who)s verra vos documents")
    assert not re.search(BEFORE_A_NAME["fr"], "Chaque membre du groupe « %(who)s » verra vos documents")

