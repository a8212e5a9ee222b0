"""Every text of the physicians' page (and of the layout it shares) is in its message catalogues,
translated in fr, de and it, and the compiled catalogues are those of the sources (`make hcp-messages`)."""

import re
from pathlib import Path

import pytest
from babel.messages.extract import extract_from_dir
from babel.messages.mofile import read_mo
from babel.messages.pofile import read_po

import gateway.hcp
from gateway.pages.i18n import LANGUAGES, translations

HCP = Path(gateway.hcp.__file__).parent
SHARED = HCP.parent / "pages"
LOCALES = HCP / "locales"
METHODS = [("**.py", "python"), ("**/templates/**.html", "jinja2")]
KEYWORDS = {"_": None, "gettext": None, "ngettext": (1, 2), "N_": None}


def extracted_ids() -> set:
    found = set()
    for directory in (HCP, SHARED):
        for _file, _line, message, _comments, _context in extract_from_dir(
                str(directory), METHODS, keywords=KEYWORDS, options_map={"**/templates/**.html": {
                    "extensions": "jinja2.ext.i18n"}}):
            found.add(message if isinstance(message, str) else tuple(message))
    return found


def catalogue(lang: str):
    with open(LOCALES / lang / "LC_MESSAGES" / "messages.po", "rb") as source:
        return read_po(source, locale=lang)


def _key(value):
    return value if isinstance(value, str) else tuple(value)


@pytest.mark.parametrize("lang", LANGUAGES)
def test_each_catalogue_holds_every_message_of_the_code(lang):
    assert {_key(m.id) for m in catalogue(lang) if m.id} == extracted_ids()


@pytest.mark.parametrize("lang", ["fr", "de", "it"])
def test_every_message_is_translated(lang):
    untranslated = [m.id for m in catalogue(lang) if m.id and not all(m.string if isinstance(m.string, tuple)
                                                                      else [m.string])]
    assert untranslated == []


@pytest.mark.parametrize("lang", ["fr", "de", "it"])
def test_every_translation_keeps_its_placeholders(lang):
    """A translation that drops or renames %(name)s would fail (or show the wrong value) when rendered."""
    names = re.compile(r"%\((\w+)\)[sd]")
    wrong = [m.id for m in catalogue(lang) if m.id for source, text in _pairs(m) if
             set(names.findall(source)) != set(names.findall(text))]
    assert wrong == []


def _pairs(message):
    if isinstance(message.id, str):
        return [(message.id, message.string)]
    return [(message.id[1], text) for text in message.string]


@pytest.mark.parametrize("lang", LANGUAGES)
def test_the_compiled_catalogue_is_the_source(lang):
    with open(LOCALES / lang / "LC_MESSAGES" / "messages.mo", "rb") as compiled:
        mo = {_key(m.id): _key(m.string) for m in read_mo(compiled) if m.id}
    po = {_key(m.id): _key(m.string) for m in catalogue(lang) if m.id}
    assert mo == {k: v for k, v in po.items() if v and v != ("", "")}


@pytest.mark.parametrize("template", sorted(p.name for p in (HCP / "templates").glob("*.html")))
def test_templates_show_no_text_outside_the_catalogues(template):
    source = (HCP / "templates" / template).read_text(encoding="utf-8")
    text = re.sub(r"\{\{.*?\}\}|\{%.*?%\}|\{#.*?#\}", " ", source, flags=re.S)
    text = re.sub(r"<[^>]*>", " ", text, flags=re.S)
    assert re.findall(r"[A-Za-zÀ-ÿ]{2,}", text) == []


def test_the_pages_read_their_own_catalogues():
    assert translations("de", LOCALES).gettext("Find a patient") == "Patientin / Patienten finden"
    assert translations("de", HCP.parent / "portal" / "locales").gettext("Find a patient") == "Find a patient"
