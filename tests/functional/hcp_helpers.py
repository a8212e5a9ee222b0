"""Driving the physicians' page over HTTP (the app in process): the development sign-in, forms with the
session's CSRF token, and what a page shows (ids of the documents listed, problems, the main element)."""

from __future__ import annotations

import re

from conftest import SPID
from gateway.samples import pdf_document

CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
SPID_SEARCH = "urn:oid:2.16.756.5.30.1.127.3.10.3|"
UPLOAD = {"title": "Letter to the family doctor", "type": "371530004", "class": "371531000", "facility": "264358009",
          "setting": "394802001", "date": "2025-03-01", "language": "fr-CH", "confidentiality": "normal", "replaces": ""}


def csrf_of(client, path: str = "/hcp/sign-in") -> str:
    return CSRF.search(client.get(path).text).group(1)


def sign_in(client, gln: str, name: str = "Dr. Test", **extra):
    """The development sign-in as a professional (`as=assistant`, `acting_for=…` for an assistant)."""
    form = {"csrf_token": csrf_of(client), "as": "professional", "gln": gln, "name": name, **extra}
    return client.post("/hcp/dev-sign-in", data=form, follow_redirects=False)


def patient_pid(client, spid: str = SPID) -> str:
    page = client.get("/hcp/patients", params={"by": "spid", "spid": spid})
    return re.search(r'href="/hcp/patients/([^"/?]+)"', page.text).group(1)


def listed_ids(page_text: str) -> set[str]:
    return set(re.findall(r'class="document-link" href="[^"]+" data-id="([^"]+)"', page_text))


def problems(page_text: str) -> list[str]:
    return [re.sub(r"\s+", " ", p).strip() for p in re.findall(r'class="problem"[^>]*>(.*?)</p>', page_text, re.S)]


def main_of(html: str) -> str:
    """The page's main element without the CSRF token (the same page for two requests compares equal)."""
    return re.sub(r'value="[^"]+"', "", html[html.index("<main"):html.index("</main>")])


def upload(client, pid: str, content: bytes | None = None, **fields):
    token = csrf_of(client, f"/hcp/patients/{pid}/upload")
    body = content if content is not None else pdf_document("Letter", ["Dear colleague"])
    return client.post(f"/hcp/patients/{pid}/upload", data={"csrf_token": token, **UPLOAD, **fields},
                       files={"file": ("letter.pdf", body, "application/pdf")}, follow_redirects=False)
