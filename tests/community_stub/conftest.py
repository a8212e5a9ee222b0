"""Fixtures of the stub's own tests: a running stub with three patients (one per provide level,
as cara's test patients Gassmann, Soares and Ratchawat) and a mutual-TLS client."""

from __future__ import annotations

import pytest

from community_stub import CommunityStub, Patient
from community_stub.clients import client, issued_assertion_bytes, soap_post, sts_request, technical_user_assertion

NORMAL = Patient("761337613645876216", "100001201", "normal")
RESTRICTED = Patient("761337616638768604", "100001202", "restricted")
SECRET = Patient("761337610888245779", "100001203", "secret")


@pytest.fixture
def stub(tmp_path):
    with CommunityStub(tmp_path, patients=[NORMAL, RESTRICTED, SECRET]) as running:
        yield running


@pytest.fixture
def http(stub):
    with client(stub) as connection:
        yield connection


def issue(stub, http, patient: Patient) -> bytes:
    """An X-User Assertion from the stub's STS, as issued (bytes)."""
    answer = soap_post(http, stub.sts_url, sts_request(technical_user_assertion(stub), spid=patient.spid,
                                                       gln=stub.principal_gln, name=stub.principal_name))
    assert answer.status_code == 200, answer.text
    return issued_assertion_bytes(answer.content)
