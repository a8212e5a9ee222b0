"""ebRIM 3.0 `SubmitObjectsRequest` (an XDM METADATA.XML) → plain values, through a hardened parser.

Why the raw stage: a document held for an unmapped code must be mapped again once the code table
has grown (`migrate retry`), so what is held is these values, not the mapped model.

Why lxml with this parser: an export is input like any other. Entities are never substituted
(`resolve_entities=False`), no DTD is loaded, nothing is fetched (`no_network`), no huge trees; a
document that declares a DOCTYPE at all (entity bomb, external entity) is then refused, without any
entity having been expanded. lxml rather than defusedxml's ElementTree: the latter builds the tree
through Python callbacks, libxml2 in C — an order of magnitude apart per document entry
(bench/README.md).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

from lxml import etree
from lxml.etree import _Element as Element

RIM = "urn:oasis:names:tc:ebxml-regrep:xsd:rim:3.0"
LCM = "urn:oasis:names:tc:ebxml-regrep:xsd:lcm:3.0"
MAX_METADATA_BYTES = 32 * 1024 * 1024  # the metadata of one submission set, held in memory once
DOCTYPE = "doctype"  # the security kind of a refused DOCTYPE (see MetadataRefused)

# XDS classification schemes (ITI TF-3 4.2.5)
CLASS_CODE = "urn:uuid:41a5887f-8865-4c09-adf7-e362475b143a"
CONFIDENTIALITY_CODE = "urn:uuid:f4f85eac-e6cb-4883-b524-f2705394840f"
FORMAT_CODE = "urn:uuid:a09d5840-386c-46f2-b5ad-9c3699a4309d"
FACILITY_TYPE_CODE = "urn:uuid:f33fb8ac-18af-42cc-ae0e-ed0b0bdb91e1"
PRACTICE_SETTING_CODE = "urn:uuid:cccf5598-8b07-4b77-a05e-ae952c785ead"
TYPE_CODE = "urn:uuid:f0306f51-975f-434e-a61c-c59651d33983"
EVENT_CODE = "urn:uuid:2c6b8cb7-8b2a-4051-b291-b1ae6a575ef4"
DOCUMENT_AUTHOR = "urn:uuid:93606bcf-9494-43ec-9b4e-a7748d1a838d"
DOCUMENT_PATIENT_ID = "urn:uuid:58a6f841-87b3-4a3e-92fd-a8ffeff98427"
DOCUMENT_UNIQUE_ID = "urn:uuid:2e82c1f6-a085-4c72-9da3-8640a32e42ab"
STABLE_DOCUMENT = "urn:uuid:7edca82f-054d-47f2-a032-9b2a5b5186c1"
SUBMISSION_SET_NODE = "urn:uuid:a54d6aa5-d40d-43f9-88c1-b17ab3e2f4f5"
SUBMISSION_AUTHOR = "urn:uuid:a7058bb9-b4e4-4307-ba5b-e3f0ab85e12d"
CONTENT_TYPE_CODE = "urn:uuid:aa543740-bdda-424e-8c96-df4873be8500"
SUBMISSION_PATIENT_ID = "urn:uuid:6b5aea1a-874d-4603-a4bc-96a0a7b38446"
SUBMISSION_SOURCE_ID = "urn:uuid:554ac39e-e3fe-47fe-b233-965d2a147832"
SUBMISSION_UNIQUE_ID = "urn:uuid:96fdda7c-d067-4183-912e-bf5ee74998a8"
HAS_MEMBER = "urn:oasis:names:tc:ebxml-regrep:AssociationType:HasMember"
RPLC = "urn:ihe:iti:2007:AssociationType:RPLC"
APND = "urn:ihe:iti:2007:AssociationType:APND"
XFRM = "urn:ihe:iti:2007:AssociationType:XFRM"
SIGNS = "urn:ihe:iti:2007:AssociationType:signs"


class MetadataRefused(Exception):
    """METADATA.XML is not acceptable input (DTD/entities, not XML, not a SubmitObjectsRequest).
    `security`: set when the refusal guards the gateway (a DOCTYPE: entity bombs, external entities)."""

    def __init__(self, reason: str, *, security: str | None = None):
        super().__init__(reason)
        self.security = security


@dataclass(frozen=True)
class Classified:
    """One classification: its scheme, the code, the coding scheme and display; the author's slots."""

    scheme: str
    code: str
    coding_scheme: str | None = None
    display: str | None = None
    slots: dict[str, list[str]] = field(default_factory=dict)


@dataclass(frozen=True)
class RegistryObject:
    """An ExtrinsicObject (document entry) or a RegistryPackage (submission set), as values."""

    id: str
    kind: str  # "document" | "submission-set"
    mime_type: str | None
    name: str | None
    description: str | None
    slots: dict[str, list[str]]
    classifications: list[Classified]
    external_ids: dict[str, str]

    def slot(self, name: str) -> str | None:
        values = self.slots.get(name)
        return values[0] if values else None

    def codes(self, scheme: str) -> list[Classified]:
        return [c for c in self.classifications if c.scheme == scheme]

    def to_json(self) -> dict:
        return {"id": self.id, "kind": self.kind, "mime_type": self.mime_type, "name": self.name,
                "description": self.description, "slots": self.slots,
                "classifications": [c.__dict__ for c in self.classifications], "external_ids": self.external_ids}

    @classmethod
    def from_json(cls, data: dict) -> RegistryObject:
        return cls(**{**data, "classifications": [Classified(**c) for c in data["classifications"]]})


@dataclass(frozen=True)
class Association:
    type: str
    source: str
    target: str


@dataclass(frozen=True)
class Metadata:
    submission_set: RegistryObject | None
    documents: list[RegistryObject]
    associations: list[Association]


_local = threading.local()


def _parser() -> etree.XMLParser:
    """One parser per thread (an lxml parser must not be used by two threads at once)."""
    parser = getattr(_local, "parser", None)
    if parser is None:
        parser = _local.parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False,
                                                 dtd_validation=False, huge_tree=False, remove_comments=True,
                                                 remove_pis=True)
    return parser


def parse_metadata(xml: bytes) -> Metadata:
    if len(xml) > MAX_METADATA_BYTES:
        raise MetadataRefused(f"METADATA.XML is larger than {MAX_METADATA_BYTES} bytes")
    if b"<!DOCTYPE" in xml or b"<!ENTITY" in xml:  # the common encodings; docinfo below catches the rest
        raise MetadataRefused("METADATA.XML carries a DOCTYPE (DTD, entity declarations): refused without "
                              "expanding any entity", security=DOCTYPE)
    try:
        root = etree.fromstring(xml, parser=_parser())
    except etree.XMLSyntaxError as exc:
        raise MetadataRefused(f"METADATA.XML is not well-formed XML ({exc})") from exc
    docinfo = root.getroottree().docinfo
    if docinfo.doctype or docinfo.internalDTD is not None or docinfo.externalDTD is not None:
        raise MetadataRefused("METADATA.XML carries a DOCTYPE (DTD, entity declarations): refused without "
                              "expanding any entity", security=DOCTYPE)
    if root.tag != f"{{{LCM}}}SubmitObjectsRequest":
        raise MetadataRefused(f"METADATA.XML is not an ebRIM 3.0 lcm:SubmitObjectsRequest (root {root.tag})")
    objects = root.find(f"{{{RIM}}}RegistryObjectList")
    if objects is None:
        raise MetadataRefused("METADATA.XML has no rim:RegistryObjectList")
    documents, packages, associations, loose = [], [], [], []
    for element in objects:
        if not isinstance(element.tag, str):  # an entity reference left unexpanded, say
            continue
        tag = element.tag.rpartition("}")[2]
        if tag == "ExtrinsicObject":
            documents.append(_registry_object(element, "document"))
        elif tag == "RegistryPackage":
            packages.append(_registry_object(element, "submission-set"))
        elif tag == "Association":
            associations.append(Association(element.get("associationType", ""), element.get("sourceObject", ""),
                                            element.get("targetObject", "")))
        elif tag == "Classification":
            loose.append(element)
    # The submission set is the package classified as one, inside it or by a Classification beside it.
    marked = {e.get("classifiedObject") for e in loose if e.get("classificationNode") == SUBMISSION_SET_NODE}
    submission_set = next((p for p in packages if p.id in marked or any(
        c.scheme == "node" and c.code == SUBMISSION_SET_NODE for c in p.classifications)), None)
    if submission_set is None and len(packages) == 1:
        submission_set = packages[0]
    return Metadata(submission_set, documents, associations)


# Tags looked up by direct child iteration (`iterchildren`, in C) rather than `find`/`findall`,
# which go through lxml's Python ElementPath: half the reader's time in METADATA.XML was there.
_SLOT, _VALUE, _NAME, _DESCRIPTION, _LOCALIZED, _CLASSIFICATION, _EXTERNAL_ID = (
    f"{{{RIM}}}{tag}" for tag in ("Slot", "Value", "Name", "Description", "LocalizedString", "Classification",
                                  "ExternalIdentifier"))


def _text(element: Element | None) -> str | None:
    """The value of the first LocalizedString of a Name or Description."""
    if element is None:
        return None
    for value in element.iterchildren(_LOCALIZED):
        return value.get("value")
    return None


def _slot_values(slot: Element) -> list[str]:
    return [v.text or "" for v in slot.iter(_VALUE)]


def _classified(c: Element) -> Classified:
    node = c.get("classificationNode")
    if node:
        return Classified("node", node)
    slots: dict[str, list[str]] = {}
    name = None
    for child in c.iterchildren(_SLOT, _NAME):
        if child.tag == _SLOT:
            slots[child.get("name", "")] = _slot_values(child)
        elif name is None:
            name = child
    scheme = (slots.pop("codingScheme", None) or [None])[0]
    return Classified(c.get("classificationScheme", ""), c.get("nodeRepresentation", ""), scheme, _text(name), slots)


def _registry_object(element: Element, kind: str) -> RegistryObject:
    """One pass over the object's children: slots, classifications, external identifiers, and its
    first Name and Description."""
    slots: dict[str, list[str]] = {}
    classifications: list[Classified] = []
    external_ids: dict[str, str] = {}
    name = description = None
    for child in element.iterchildren(_SLOT, _CLASSIFICATION, _EXTERNAL_ID, _NAME, _DESCRIPTION):
        tag = child.tag
        if tag == _SLOT:
            slots[child.get("name", "")] = _slot_values(child)
        elif tag == _CLASSIFICATION:
            classifications.append(_classified(child))
        elif tag == _EXTERNAL_ID:
            external_ids[child.get("identificationScheme", "")] = child.get("value", "")
        elif tag == _NAME:
            name = child if name is None else name
        else:
            description = child if description is None else description
    return RegistryObject(id=element.get("id", ""), kind=kind, mime_type=element.get("mimeType"), name=_text(name),
                          description=_text(description), slots=slots, classifications=classifications,
                          external_ids=external_ids)
