"""gateway/http/versioning.py: the conditional headers as clients send them (fhirpy sends the bare versionId),
the answers' headers, and the Prefer: return shapes."""

from __future__ import annotations

import orjson
import pytest
from starlette.requests import Request

from adapters.cara.errors import InvalidInput, NotFound
from gateway.http.versioning import if_match, read_response, version_number, write_response

RESOURCE = {"resourceType": "Consent", "id": "abc", "meta": {"versionId": "3",
                                                            "lastUpdated": "2026-12-02T01:02:03.456+00:00"}}


def request(**headers: str) -> Request:
    return Request({"type": "http", "method": "GET", "path": "/", "query_string": b"",
                    "headers": [(k.replace("_", "-").lower().encode(), v.encode()) for k, v in headers.items()]})


@pytest.mark.parametrize("value, version", [('W/"3"', 3), ('"3"', 3), ("3", 3), ("*", None), (" W/\"12\" ", 12)])
def test_if_match_reads_the_forms_clients_send(value, version):
    assert if_match(request(If_Match=value)) == version


def test_no_if_match_is_an_unconditional_write():
    assert if_match(request()) is None


@pytest.mark.parametrize("value", ["W/3", "\"3", 'W/"abc"', '"1", "2"', "٣", 'W/"1234567890"'])
def test_an_if_match_naming_no_single_version_is_refused(value):
    with pytest.raises(InvalidInput):
        if_match(request(If_Match=value))


@pytest.mark.parametrize("value", ["0x1", "-1", "1.0", "", "١", "9999999999"])
def test_a_history_segment_that_is_no_version_is_not_found(value):
    with pytest.raises(NotFound):
        version_number(value)


@pytest.mark.parametrize("tag, status", [('W/"3"', 304), ("3", 304), ('W/"2", W/"3"', 304), ("*", 304),
                                          ('W/"2"', 200), ('W/"33"', 200)])
def test_if_none_match_answers_304_for_the_version_read_only(tag, status):
    answer = read_response(request(If_None_Match=tag), RESOURCE)
    assert (answer.status_code, answer.headers["etag"]) == (status, 'W/"3"')
    assert answer.headers["last-modified"] == "Wed, 02 Dec 2026 01:02:03 GMT"
    assert answer.body == (b"" if status == 304 else orjson.dumps(RESOURCE))


@pytest.mark.parametrize("prefer, body", [
    ("return=minimal", b""),
    ("return=representation", orjson.dumps(RESOURCE)),
    (None, orjson.dumps(RESOURCE)),
    ("respond-async; return=OperationOutcome", None),
])
def test_write_response_honours_prefer_return(prefer, body):
    answer = write_response(request(**({"Prefer": prefer} if prefer else {})), RESOURCE, 201, base_url="https://x/fhir")
    assert (answer.status_code, answer.headers["location"], answer.headers["etag"]) == (
        201, "https://x/fhir/Consent/abc/_history/3", 'W/"3"')
    if body is None:
        issue = orjson.loads(answer.body)["issue"][0]
        assert (issue["severity"], issue["diagnostics"]) == ("information", "Consent/abc stored as version 3")
    else:
        assert answer.body == body
