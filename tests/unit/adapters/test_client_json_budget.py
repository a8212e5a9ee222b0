"""client_json: duplicate members and the metadata budget, as the parser sees them (items 7, 9)."""

from __future__ import annotations

import orjson
import pytest

from adapters.cara.client_json import JsonLimits, load_client_json
from adapters.cara.errors import InvalidInput, ProfileViolation, TooLarge

SMALL = JsonLimits(max_metadata_bytes=2048, max_depth=8, max_resource_bytes=1024, max_members=50)


@pytest.mark.parametrize("raw, kind, where", [
    (b'{"a":1,"a":2}', InvalidInput, "R.a"),
    (b'{"a":1,"\\u0061":2}', InvalidInput, "R.a"),  # the same name once decoded
    (b'{"x":[{"y":1},{"z":{"k":1,"k":1}}]}', InvalidInput, "R.x[1].z.k"),
    (b'{"s":"a\\",\\"s\\":1","s":2}', InvalidInput, "R.s"),  # quotes inside a string are not members
    (b'{"d":' + b'[' * 9 + b']' * 9 + b'}', ProfileViolation, "R.d[0][0][0][0][0][0]"),
    (orjson.dumps({"e": [{"u": "x"}] * 60}), TooLarge, "R"),
    (orjson.dumps({"t": "x" * 3000}), TooLarge, "R"),
])
def test_refusals_name_the_class_and_the_place(raw, kind, where):
    with pytest.raises(kind) as refused:
        load_client_json(raw, root="R", limits=SMALL)
    assert type(refused.value) is kind
    assert refused.value.issues[0].location.startswith(where)


def test_binary_data_is_not_metadata_and_valid_json_is_returned_as_orjson_reads_it():
    raw = orjson.dumps({"resourceType": "Binary", "data": "QUFB" * 10_000, "s": "a\"b,{[:"})
    assert load_client_json(raw, root="Binary", limits=SMALL) == orjson.loads(raw)


@pytest.mark.parametrize("raw", [b'{"a":NaN}', b'{"a":1', b"\xff", b'{"a":1,"b":' + b"9" * 5000 + b"}"])
def test_what_is_not_json_is_a_400(raw):
    with pytest.raises(InvalidInput):
        load_client_json(raw, root="R")
