"""Reading a SubmitObjectsRequest the way a registry does: the submission set, its document entries,
associations, slots, classifications and external identifiers (ebRIM 3.0, IHE ITI TF-3 4.2)."""

from __future__ import annotations

from dataclasses import dataclass, field

from lxml import etree

from .soap import LCM, RIM

STABLE_ENTRY = "urn:uuid:7edca82f-054d-47f2-a032-9b2a5b5186c1"
SUBMISSION_SET_NODE = "urn:uuid:a54d6aa5-d40d-43f9-88c5-b4633d873bdd"
HAS_MEMBER = "urn:oasis:names:tc:ebxml-regrep:AssociationType:HasMember"
RPLC = "urn:ihe:iti:2007:AssociationType:RPLC"

# classificationScheme -> the affinity domain's code table for it
ENTRY_CODES = {
    "urn:uuid:41a5887f-8865-4c09-adf7-e362475b143a": "classCode",
    "urn:uuid:f0306f51-975f-434e-a61c-c59651d33983": "typeCode",
    "urn:uuid:a09d5840-386c-46f2-b5ad-9c3699a4309d": "formatCode",
    "urn:uuid:f33fb8ac-18af-42cc-ae0e-ed0b0bdb91e1": "healthcareFacilityTypeCode",
    "urn:uuid:cccf5598-8b07-4b77-a05e-ae952c785ead": "practiceSettingCode",
    "urn:uuid:f4f85eac-e6cb-4883-b524-f2705394840f": "confidentialityCode",
    "urn:uuid:2c6b8cb7-8b2a-4051-b291-b1ae6a575ef4": "eventCodeList",
}
SUBMISSION_SET_CODES = {"urn:uuid:aa543740-bdda-424e-8c96-df4873be8500": "contentTypeCode"}
ENTRY_AUTHOR = "urn:uuid:93606bcf-9494-43ec-9b4e-a7748d1a838d"
SUBMISSION_SET_AUTHOR = "urn:uuid:a7058bb9-b4e4-4307-ba5b-e3f0ab85e12d"
ENTRY_PATIENT_ID = "urn:uuid:58a6f841-87b3-4a3e-92fd-a8ffeff98427"
ENTRY_UNIQUE_ID = "urn:uuid:2e82c1f6-a085-4c72-9da3-8640a32e42ab"
SET_PATIENT_ID = "urn:uuid:6b5aea1a-874d-4603-a4bc-96a0a7b38446"
SET_UNIQUE_ID = "urn:uuid:96fdda7c-d067-4183-912e-bf5ee74998a8"
SET_SOURCE_ID = "urn:uuid:554ac39e-e3fe-47fe-b233-965d2a147832"


def r(name: str) -> str:
    return f"{{{RIM}}}{name}"


@dataclass
class Coded:
    scheme: str          # classificationScheme
    code: str            # nodeRepresentation
    coding_scheme: str   # Slot codingScheme
    display: str


@dataclass
class RegistryEntry:
    """A DocumentEntry or the SubmissionSet: what the rules read from it."""
    id: str
    element: etree._Element
    slots: dict[str, list[str]] = field(default_factory=dict)
    codes: list[Coded] = field(default_factory=list)
    authors: list[dict[str, list[str]]] = field(default_factory=list)
    identifiers: dict[str, list[str]] = field(default_factory=dict)

    def identifier(self, scheme: str) -> str | None:
        values = self.identifiers.get(scheme, [])
        return values[0] if len(values) == 1 else None

    def slot(self, name: str) -> str | None:
        values = self.slots.get(name, [])
        return values[0] if len(values) == 1 else None


@dataclass
class Association:
    id: str
    type: str
    source: str
    target: str
    slots: dict[str, list[str]]


@dataclass
class Submission:
    submission_set: RegistryEntry | None
    packages: int
    entries: list[RegistryEntry]
    associations: list[Association]


def read_submission(request: etree._Element) -> Submission:
    objects = request.find(f"{{{LCM}}}SubmitObjectsRequest/{r('RegistryObjectList')}")
    if objects is None:
        return Submission(None, 0, [], [])
    set_ids = {c.get("classifiedObject") for c in objects.iterfind(r("Classification"))
               if c.get("classificationNode") == SUBMISSION_SET_NODE}
    packages = [p for p in objects.iterfind(r("RegistryPackage"))]
    for package in packages:  # the node may also be given inside the package
        if any(c.get("classificationNode") == SUBMISSION_SET_NODE for c in package.iterfind(r("Classification"))):
            set_ids.add(package.get("id"))
    sets = [p for p in packages if p.get("id") in set_ids]
    entries = [_entry(e, ENTRY_AUTHOR) for e in objects.iterfind(r("ExtrinsicObject"))]
    associations = [Association(id=a.get("id") or "", type=a.get("associationType") or "",
                                source=a.get("sourceObject") or "", target=a.get("targetObject") or "",
                                slots=_slots(a)) for a in objects.iterfind(r("Association"))]
    submission_set = _entry(sets[0], SUBMISSION_SET_AUTHOR) if len(sets) == 1 else None
    return Submission(submission_set, len(sets), entries, associations)


def _entry(element: etree._Element, author_scheme: str) -> RegistryEntry:
    entry = RegistryEntry(id=element.get("id") or "", element=element, slots=_slots(element))
    for classification in element.iterfind(r("Classification")):
        scheme = classification.get("classificationScheme")
        if scheme == author_scheme:
            entry.authors.append(_slots(classification))
        elif scheme:
            coding = _slots(classification).get("codingScheme", [])
            name = classification.find(f"{r('Name')}/{r('LocalizedString')}")
            entry.codes.append(Coded(scheme=scheme, code=classification.get("nodeRepresentation") or "",
                                     coding_scheme=coding[0] if len(coding) == 1 else "",
                                     display=name.get("value", "") if name is not None else ""))
    for identifier in element.iterfind(r("ExternalIdentifier")):
        entry.identifiers.setdefault(identifier.get("identificationScheme") or "", []).append(
            identifier.get("value") or "")
    return entry


def _slots(element: etree._Element) -> dict[str, list[str]]:
    return {slot.get("name"): [(v.text or "") for v in slot.iterfind(f"{r('ValueList')}/{r('Value')}")]
            for slot in element.iterfind(r("Slot"))}
