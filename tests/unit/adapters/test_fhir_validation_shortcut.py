"""`parse_resource` gives the R4B model a short valid value in place of each Binary.data it has already
checked strictly (fhir_mapping._checked_base64), so the model does not decode the document's base64
again. The verdict must be the model's on the resource as sent: every value the strict decoder accepts
is one the model accepts, and whatever else is wrong with a resource is reported exactly as before."""

import base64
import random

import orjson
import pytest
from fhir.resources.R4B import get_fhir_model_class
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from adapters.cara.client_json import DEFAULT_LIMITS
from adapters.cara.errors import InvalidInput
from adapters.cara.fhir_mapping import parse_resource
from adapters.cara.mhd_rules import decode_binary
from gateway.samples import provide_bundle
from test_base64_strict import EDGE_CASES

SPID = "761337610411353650"
PDF = b"%PDF-1.4\n" + random.Random(3).randbytes(5_000)


def bundle(**document) -> dict:
    return provide_bundle(spid=SPID, documents=[{"title": "Report", "content": PDF, **document}])


def strictly_valid(value: str) -> bool:
    try:
        decode_binary(value)
    except ValueError:  # binascii.Error is a ValueError
        return False
    return True


def model_verdict(resource: dict, kind: str) -> list[tuple]:
    """What the R4B model says of the resource as sent: [] or its errors (location, message)."""
    try:
        get_fhir_model_class(kind).model_validate(resource)
    except ValidationError as error:
        return [(e["loc"], e["msg"]) for e in error.errors()]
    return []


def parse_verdict(resource: dict, kind: str) -> list[tuple]:
    try:
        parse_resource(orjson.dumps(resource), kind, limits=DEFAULT_LIMITS)
    except InvalidInput as refusal:
        return [(issue.location, issue.message) for issue in refusal.issues]
    return []


def with_binary_data(resource: dict, value) -> dict:
    for entry in resource["entry"]:
        if entry["resource"]["resourceType"] == "Binary":
            entry["resource"]["data"] = value
    return resource


@pytest.mark.parametrize("value", [v for v in EDGE_CASES if strictly_valid(v)])
def test_every_strictly_valid_value_is_valid_to_the_model(value):
    assert model_verdict(with_binary_data(bundle(), value), "Bundle") == []
    assert model_verdict({"resourceType": "Binary", "contentType": "application/pdf", "data": value}, "Binary") == []
    assert parse_verdict(with_binary_data(bundle(), value), "Bundle") == []


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet="ABCDabcd0129+/=", max_size=16) | st.binary(max_size=40).map(
    lambda b: base64.b64encode(b).decode()))
def test_random_strictly_valid_values_are_valid_to_the_model(value):
    if strictly_valid(value):
        assert model_verdict({"resourceType": "Binary", "contentType": "text/plain", "data": value}, "Binary") == []


@pytest.mark.parametrize("breakage, kind", [
    (lambda b: b["entry"][1]["resource"]["content"][0]["attachment"].update(size="large"), "Bundle"),
    (lambda b: b["entry"][1]["resource"].update(status=["current"]), "Bundle"),
    (lambda b: b["entry"][2]["resource"].update(unknownElement=1), "Bundle"),
    (lambda b: b["entry"][2]["resource"].update(contentType=3), "Bundle"),
    (lambda b: b["entry"][0]["resource"].update(date="2026-13-40"), "Bundle"),
    (lambda b: b["entry"].append({"fullUrl": "urn:uuid:0b6c4a9e-93a5-4bd4-8a4b-6d0b3c2f0f01", "resource": {
        "resourceType": "Binary", "contentType": "text/plain", "data": "QUJD", "bogus": 1}}), "Bundle"),
    (lambda b: b["entry"][2]["resource"].update(data=12345), "Bundle"),
    (lambda b: b.update(total="many"), "Bundle"),
])
def test_what_else_is_wrong_is_reported_as_the_model_reports_it(breakage, kind):
    broken = bundle()
    breakage(broken)
    expected = [(_fhirpath(kind, location), message) for location, message in model_verdict(broken, kind)[:20]]
    assert expected  # the breakage is one the model refuses
    assert parse_verdict(broken, kind) == expected


def test_a_binary_on_its_own_is_judged_the_same_way():
    binary = {"resourceType": "Binary", "contentType": "application/pdf", "data": base64.b64encode(PDF).decode(),
              "securityContext": "not a reference"}
    expected = [(_fhirpath("Binary", location), message) for location, message in model_verdict(binary, "Binary")]
    assert expected and parse_verdict(binary, "Binary") == expected
    del binary["securityContext"]
    assert parse_verdict(binary, "Binary") == []


def test_base64_the_strict_decoder_refuses_is_refused_before_the_model():
    with pytest.raises(InvalidInput) as refused:
        parse_resource(orjson.dumps(with_binary_data(bundle(), "QUJD\nREVG")), "Bundle", limits=DEFAULT_LIMITS)
    assert [(i.message, i.location) for i in refused.value.issues] == [("Binary.data is not valid base64",
                                                                        "Bundle.entry[2].resource.data")]


def test_the_parsed_bundle_keeps_the_document():
    parsed = parse_resource(orjson.dumps(bundle()), "Bundle", limits=DEFAULT_LIMITS)
    assert decode_binary(parsed["entry"][2]["resource"]["data"]) == PDF


def _fhirpath(root: str, loc: tuple) -> str:
    path = root
    for part in loc:
        path += f"[{part}]" if isinstance(part, int) else f".{part}"
    return path.replace(".resource_type", ".resourceType")
