"""The XDM reader on hand-made media: hardened XML, ZIP members checked, truncated ZIPs, names."""

import io
import os
import time
import tracemalloc
import zipfile

import pytest

from adapters.infomed.generate.metadata import ENTITY_BOMB
from adapters.infomed.xdm import ebrim
from adapters.infomed.xdm.codes import CodeTables
from adapters.infomed.xdm.mapping import Refused, cx_identifier, map_document
from adapters.infomed.xdm.media import MediaProblem, MemberRefused, Package, open_media, safe_uri
from adapters.cara.model import Identifier

EXTERNAL_ENTITY = (b'<?xml version="1.0"?><!DOCTYPE r [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
                   b'<lcm:SubmitObjectsRequest xmlns:lcm="urn:oasis:names:tc:ebxml-regrep:xsd:lcm:3.0">&x;'
                   b'</lcm:SubmitObjectsRequest>')


def test_an_entity_bomb_is_refused_without_being_expanded():
    tracemalloc.start()
    started = time.perf_counter()
    with pytest.raises(ebrim.MetadataRefused, match="DOCTYPE"):
        ebrim.parse_metadata(ENTITY_BOMB)
    elapsed = time.perf_counter() - started
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    # expanded, &lol9; would be 10^9 "lol"s (3 GB); refused, nothing near a megabyte was allocated
    assert peak < 1_000_000 and elapsed < 1.0


@pytest.mark.parametrize("xml", [EXTERNAL_ENTITY, EXTERNAL_ENTITY.decode().encode("utf-16")])
def test_an_external_entity_is_refused_in_any_encoding(xml):
    with pytest.raises(ebrim.MetadataRefused):
        ebrim.parse_metadata(xml)


@pytest.mark.parametrize("xml, reason", [
    (b"<not-closed>", "not well-formed"),
    (b"<root/>", "not an ebRIM 3.0"),
    (b'<lcm:SubmitObjectsRequest xmlns:lcm="urn:oasis:names:tc:ebxml-regrep:xsd:lcm:3.0"/>', "RegistryObjectList"),
])
def test_metadata_that_is_not_a_submit_objects_request_is_refused(xml, reason):
    with pytest.raises(ebrim.MetadataRefused, match=reason):
        ebrim.parse_metadata(xml)


@pytest.mark.parametrize("uri", ["../../etc/passwd", "/etc/passwd", "a/../../b", "..\\..\\x", "C:/x", "",
                                 "a\x00b"])
def test_a_uri_leaving_its_package_is_refused(uri):
    with pytest.raises(MemberRefused):
        safe_uri(uri)


def test_plain_uris_are_accepted():
    assert str(safe_uri("DOC00001.PDF")) == "DOC00001.PDF"
    assert str(safe_uri("sub/DOC.XML")) == "sub/DOC.XML"


def _zip(path, members: dict[str, bytes], *, compress=zipfile.ZIP_DEFLATED):
    with zipfile.ZipFile(path, "w", compression=compress) as archive:
        for name, data in members.items():
            archive.writestr(name, data)


def test_a_member_inflating_like_a_bomb_is_refused_before_inflation(tmp_path):
    path = tmp_path / "bomb.zip"
    _zip(path, {"IHE_XDM/SUBSET01/METADATA.XML": b"<x/>", "IHE_XDM/SUBSET01/DOC.PDF": b"\0" * 5_000_000})
    package, = list(open_media(path))
    with pytest.raises(MemberRefused, match="decompression bomb"):
        package.read("DOC.PDF")
    assert package.metadata == b"<x/>"


def test_a_truncated_zip_is_reported_and_its_readable_part_read(tmp_path):
    path = tmp_path / "cut.zip"
    first, second = os.urandom(20_000), os.urandom(20_000)
    _zip(path, {"IHE_XDM/SUBSET01/METADATA.XML": b"<one/>", "IHE_XDM/SUBSET01/A.PDF": first,
                "IHE_XDM/SUBSET02/METADATA.XML": b"<two/>", "IHE_XDM/SUBSET02/B.PDF": second},
         compress=zipfile.ZIP_STORED)
    data = path.read_bytes()
    path.write_bytes(data[:len(data) - 15_000])  # B.PDF and the central directory are cut off

    problem, one, two = list(open_media(path))

    assert isinstance(problem, MediaProblem) and "truncated" in problem.reason and problem.source == "cut.zip"
    assert (one.source, one.metadata, one.read("A.PDF")) == ("cut.zip/IHE_XDM/SUBSET01", b"<one/>", first)
    assert two.metadata == b"<two/>"
    with pytest.raises(MemberRefused, match="names no file"):
        two.read("B.PDF")


def test_a_latin1_file_name_is_found_by_its_decoded_name(tmp_path):
    subset = tmp_path / "media" / "IHE_XDM" / "SUBSET01"
    subset.mkdir(parents=True)
    (subset / "METADATA.XML").write_bytes(b"<x/>")
    with open(os.fsencode(subset) + b"/D\xe9p\xf4t.PDF", "wb") as handle:
        handle.write(b"%PDF-1.4 latin")

    package, = list(open_media(tmp_path / "media"))

    assert package.read("Dépôt.PDF") == b"%PDF-1.4 latin"


def test_a_cp437_zip_name_is_found_by_its_decoded_name(tmp_path):
    path = tmp_path / "old.zip"
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("IHE_XDM/SUBSET01/METADATA.XML", b"<x/>")
        archive.writestr("IHE_XDM/SUBSET01/placeholder.PDF", b"%PDF-1.4 old tool")
    # rewrite the member name's bytes as an old tool would store them: Latin-1, no UTF-8 flag
    path.write_bytes(buffer.getvalue().replace(b"placeholder", b"D\xe9p\xf4t-00001"))

    package, = list(open_media(path))

    assert package.read("Dépôt-00001.PDF") == b"%PDF-1.4 old tool"


def test_a_symlink_out_of_the_media_is_refused(tmp_path):
    subset = tmp_path / "media" / "IHE_XDM" / "SUBSET01"
    subset.mkdir(parents=True)
    (subset / "METADATA.XML").write_bytes(b"<x/>")
    (tmp_path / "secret.txt").write_text("not yours")
    (subset / "LINK.PDF").symlink_to(tmp_path / "secret.txt")

    package, = list(open_media(tmp_path / "media"))

    with pytest.raises(MemberRefused, match="outside the media"):
        package.read("LINK.PDF")


def test_cx_identifiers_become_mpi_identifiers():
    assert cx_identifier("INF-1^^^&2.16.756.5.30.1.145.1.2&ISO") == Identifier("urn:oid:2.16.756.5.30.1.145.1.2",
                                                                               "INF-1")
    assert cx_identifier("INF-1^^^Infomed&2.16.756&ISO") == Identifier("urn:oid:2.16.756", "INF-1")
    assert cx_identifier("INF-1") is None
    assert cx_identifier("INF-1^^^&not-an-oid&ISO") is None


def _document(type_code=("AUSTRITT", "2.16.756.5.30.1.127.3.10.1.2"), content=b"%PDF-1.4 x", **slots):
    import hashlib

    values = {"hash": hashlib.sha1(content).hexdigest(), "size": str(len(content)), "creationTime": "20230102093000",
              "languageCode": "de-CH", "sourcePatientId": "INF-7^^^&2.16.756.5.30.1.145.1.2&ISO", **slots}
    codes = [(ebrim.CLASS_CODE, "ARZTBERICHT", "2.16.756.5.30.1.127.3.10.1.1"), (ebrim.TYPE_CODE, *type_code),
             (ebrim.FORMAT_CODE, "urn:che:epr:EPR_Unstructured_Document", "2.16.756.5.30.1.127.3.10.10"),
             (ebrim.CONFIDENTIALITY_CODE, "1051000195109", "2.16.756.5.30.1.127.3.10.1.5"),
             (ebrim.FACILITY_TYPE_CODE, "22232009", "2.16.840.1.113883.6.96"),
             (ebrim.PRACTICE_SETTING_CODE, "ALLGEMEIN", "2.16.756.5.30.1.127.3.10.1.18")]
    return ebrim.RegistryObject(
        id="urn:uuid:00000000-0000-4000-8000-000000000001", kind="document", mime_type="application/pdf",
        name="Austritt", description=None, slots={k: [v] for k, v in values.items()},
        classifications=[ebrim.Classified(s, c, cs) for s, c, cs in codes],
        external_ids={ebrim.DOCUMENT_UNIQUE_ID: "urn:oid:2.25.77"}), content


def test_old_swiss_codes_map_through_the_versioned_table():
    obj, content = _document()
    mapped = map_document(obj, None, [], content, CodeTables.load())

    entry = mapped.document.entry
    assert (entry.type_code.system, entry.type_code.code) == ("http://snomed.info/sct", "373942005")
    assert entry.confidentiality_level == "normal"
    assert (entry.creation_time, entry.language, entry.sha1) == ("2023-01-02T09:30:00Z", "de-CH", obj.slot("hash"))
    assert mapped.patient_id == Identifier("urn:oid:2.16.756.5.30.1.145.1.2", "INF-7")


def test_an_unmapped_code_is_held_naming_the_value_and_a_later_table_maps_it(tmp_path):
    obj, content = _document(type_code=("NOTFALL", "2.16.756.5.30.1.127.3.10.1.2"))
    with pytest.raises(Refused) as refused:
        map_document(obj, None, [], content, CodeTables.load())
    assert refused.value.held and refused.value.code == "unmapped-code"
    assert "typeCode 'NOTFALL' (codingScheme 2.16.756.5.30.1.127.3.10.1.2)" in refused.value.reason

    extra = tmp_path / "v2.json"
    extra.write_text('{"version": "site-v2", "tables": {"typeCode": {"2.16.756.5.30.1.127.3.10.1.2|NOTFALL": '
                     '{"system": "http://snomed.info/sct", "code": "373942005"}}}}')
    tables = CodeTables.load([extra])
    assert tables.version == "infomed-v1+site-v2"
    assert map_document(obj, None, [], content, tables).document.entry.type_code.code == "373942005"


@pytest.mark.parametrize("slots, reason", [
    ({"hash": "0" * 40}, "hash"), ({"size": "1"}, "size"), ({"languageCode": ""}, "languageCode"),
    ({"sourcePatientId": "garbage"}, "CX"), ({"creationTime": "2023-01-02"}, "creationTime"),
])
def test_a_document_whose_metadata_is_wrong_is_rejected_with_the_reason(slots, reason):
    obj, content = _document(**slots)
    with pytest.raises(Refused, match=reason) as refused:
        map_document(obj, None, [], content, CodeTables.load())
    assert not refused.value.held
