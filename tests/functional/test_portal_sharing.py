"""Who may see my record, over HTTP: each kind of change the page offers, previewed then confirmed,
and its effect on what professionals find over FHIR (ITI-67) or on what is stored."""

from __future__ import annotations

import json
import re

import pytest

from conftest import SPID, running_gateway, sqlite_url
from functional.helpers import one_document_bundle
from functional.test_portal_rules import csrf_of, sign_in

GROUP = "urn:oid:2.16.756.5.30.1.999.7.1"
OTHER_GLN = "7601000000019"
DIRECTORY = {"professionals": [{"gln": OTHER_GLN, "name": "Dr. Claire Rey", "organisation": "Hôpital de Sion"}],
             "groups": [{"id": GROUP, "name": "Hôpital du Valais, médecine interne"}],
             "representatives": [{"id": "rep-anna-9", "name": "Anna Zen", "birth_date": "1958-06-02",
                                  "locality": "Sierre"}]}


def directory_file(tmp_path, content=None):
    path = tmp_path / "directory.json"
    path.write_text(json.dumps(content or DIRECTORY), encoding="utf-8")
    return path


@pytest.fixture
def record(tmp_path):
    with running_gateway(tmp_path, sqlite_url(tmp_path), portal_directory=directory_file(tmp_path)) as gateway:
        gateway.register_patient(grant_hcp=None)
        assert gateway.provide(one_document_bundle()).status_code == 200
        gateway.client.headers["Accept-Language"] = "en"
        sign_in(gateway.client)
        yield gateway


def change(client, **form) -> str:
    """Preview (the explanation is returned), then confirm with the fields the preview carries."""
    token = csrf_of(client, "/portal/sharing")
    preview = client.post("/portal/sharing/preview", data={"csrf_token": token, **form})
    assert preview.status_code == 200, preview.text
    effect = re.search(r'<p class="effect" id="effect">(.*?)</p>', preview.text, re.S).group(1)
    hidden = dict(re.findall(r'<input type="hidden" name="([a-z_]+)" value="([^"]*)">',
                             preview.text[preview.text.index('action="/portal/sharing/apply"'):]))
    confirmed = client.post("/portal/sharing/apply", data=hidden, follow_redirects=False)
    assert (confirmed.status_code, confirmed.headers["location"]) == (303, "/portal/sharing?done=saved")
    return effect


def found(gateway, **token_claims) -> int:
    headers = gateway.tokens.headers(gateway.tokens.hcp(**token_claims))
    return gateway.find(headers=headers).json()["total"]


def test_a_preview_stores_nothing(record):
    before = record.client.get("/portal/sharing").text
    token = csrf_of(record.client, "/portal/sharing")
    record.client.post("/portal/sharing/preview", data={"csrf_token": token, "action": "grant-professional",
                                                         "gln": OTHER_GLN, "level": "normal"})
    assert found(record, gln=OTHER_GLN) == 0
    assert record.client.get("/portal/sharing").text.count("Revoke") == before.count("Revoke")


def test_a_group_gets_access_until_its_end_date(record):
    assert found(record, gln=OTHER_GLN, groups=(GROUP,)) == 0
    effect = change(record.client, action="grant-group", group=GROUP, level="normal", end="2099-12-31")
    assert effect == ("Every member of the group “Hôpital du Valais, médecine interne” will see your normal documents "
                      "until Dec 31, 2099.")  # the page's date format, not ISO (issue 27 item 16)
    assert found(record, gln=OTHER_GLN, groups=(GROUP,)) == 1
    assert found(record, gln=OTHER_GLN) == 0  # not a member: nothing


def test_a_grant_with_an_end_date_then_its_removal(record):
    effect = change(record.client, action="grant-professional", gln=OTHER_GLN, level="restricted", end="2099-01-31")
    assert effect == "Dr. Claire Rey will see your normal and restricted documents until Jan 31, 2099."
    assert found(record, gln=OTHER_GLN) == 1
    consent_id = re.search(r'name="consent_id" value="([0-9a-f-]{36})"', record.client.get("/portal/sharing").text)
    change(record.client, action="revoke", consent_id=consent_id.group(1))
    assert found(record, gln=OTHER_GLN) == 0


def test_the_provide_level_raises_new_uploads(record):
    effect = change(record.client, action="provide-level", provide_level="restricted")
    assert "filed as restricted at least" in effect
    record.grant(SPID, OTHER_GLN, "normal")
    assert record.provide(one_document_bundle()).status_code == 200  # sent as normal
    assert found(record, gln=OTHER_GLN) == 1  # the first document only: the new one was raised to restricted


def test_a_representative_added_on_the_page_can_sign_in(record):
    effect = change(record.client, action="representative", representative="rep-anna-9")
    assert effect.startswith("Anna Zen will act for you")
    other = record.client.__class__(record.client.app, base_url="https://testserver",
                                    headers={"Accept-Language": "en"})
    answer = sign_in(other, **{"as": "representative", "representative": "rep-anna-9"})
    assert (answer.status_code, answer.headers["location"]) == (303, "/portal/documents")
    assert "1 document" in other.get("/portal/documents").text


def test_emergency_access_switched_off_then_on_again(record):
    emergency = {"gln": OTHER_GLN, "purpose": "EMER"}
    assert found(record, **emergency) == 1
    change(record.client, action="emergency", emergency="off")
    assert found(record, **emergency) == 0
    change(record.client, action="emergency", emergency="normal")
    assert found(record, **emergency) == 1
