"""The senders file (`EPR_MLLP_SENDERS`): which institutions may send, as which technical user (TCU,
purpose AUTO) on behalf of which responsible HCP. Deny by default: a sender not in the file is refused.

    {"senders": [{"facility": "<MSH-4.1 or MSH-4.2>", "application": "<MSH-3.1>" (optional),
                  "user_id": "<TCU id>", "principal_gln": "<GLN>", "certificate_subject": "<CN>" (optional),
                  "assigning_authority": "urn:oid:…" (optional: PID-3 ids sent without one),
                  "assigning_authorities": ["urn:oid:…", …] (optional: whose patient ids it may merge;
                                                             default: its assigning_authority),
                  "source_id": "urn:oid:…", "facility_type": {"code": …}, "practice_setting": {"code": …},
                  "language": "fr-CH"}],
     "code_tables": {"document_types": {"<TXA-2>": {"type": {…}, "class": {…}}}}}

A sender with `certificate_subject` is bound to it: its messages are accepted only over TLS with a
client certificate of that CN (an MSH-4 alone cannot impersonate it). An entry may also have no
`facility`: then the certificate alone identifies it.

A sender merges (ADT^A40) only patients named by ids of its own assigning authorities: an institution's
ids are its own, and an EPR-SPID, an AHVN13 or another institution's ids are no sender's to merge by.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from adapters.cara.identity import AHVN13_SYSTEM
from adapters.cara.model import Code
from adapters.cara.vocabulary import SNOMED, SPID_SYSTEM
from adapters.infomed.hl7v2.code_tables import CodeTables
from adapters.infomed.hl7v2.documents import SenderProfile
from consent.principal import Principal
from gateway.auth.identifiers import gln_is_valid

DEFAULT_SOURCE_ID = "urn:oid:2.16.756.5.30.1.999.9"
DEFAULT_FACILITY_TYPE = {"code": "22232009", "display": "Hospital"}
DEFAULT_PRACTICE_SETTING = {"code": "394802001", "display": "General medicine"}
NOBODYS_AUTHORITIES = frozenset({SPID_SYSTEM, AHVN13_SYSTEM})  # national ids: no sender merges by them
MAX_KEY = 200  # the kept answers' sender column


class SendersFileInvalid(ValueError):
    pass


@dataclass(frozen=True)
class Sender:
    facility: str | None
    application: str | None
    user_id: str
    principal_gln: str
    certificate_subject: str | None
    profile: SenderProfile
    name: str | None = None
    authorities: frozenset[str] = frozenset()  # whose patient ids it may merge (ADT^A40)

    @property
    def key(self) -> str:
        """Whose MSH-10 numbering a control id belongs to (the answers are kept per sender)."""
        return f"{self.facility or ''}|{self.application or ''}|{self.user_id}"

    def principal(self, certificate_subject: str | None) -> Principal:
        return Principal(role="TCU", user_id=self.user_id, name=self.name or f"HL7 v2 feed {self.user_id}",
                         purpose_of_use="AUTO", acting_for=self.principal_gln,
                         client_id=f"mllp:{self.facility or self.certificate_subject}",
                         client_certificate=certificate_subject)


@dataclass(frozen=True)
class SenderRegistry:
    senders: tuple[Sender, ...]
    tables: CodeTables

    @classmethod
    def load(cls, path: Path | None) -> "SenderRegistry":
        """No file: nobody may send (deny by default)."""
        if path is None:
            return cls((), CodeTables())
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, ValueError) as error:
            raise SendersFileInvalid(f"the senders file {path} cannot be read: {error}") from None
        return cls.from_json(data)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "SenderRegistry":
        senders = tuple(_sender(entry, index) for index, entry in enumerate(data.get("senders") or []))
        return cls(senders, CodeTables.configured(data.get("code_tables")))

    def by_key(self, key: str) -> Sender | None:
        """The sender whose messages are kept under `key` (a held message's), if still in the file."""
        return next((s for s in self.senders if s.key == key), None)

    def identify(self, *, facility: tuple[str, ...], application: str, certificate_subject: str | None) -> Sender | None:
        """The sender a message comes from: its MSH-4 (either component) and, when the entry names one,
        MSH-3; an entry bound to a certificate only with that certificate. None: refused."""
        named = [s for s in self.senders if s.facility and s.facility in facility
                 and (s.application is None or s.application == application)]
        # The most specific entry first (one naming the application beats one for the whole facility).
        named.sort(key=lambda s: s.application is None)
        for sender in named:
            if sender.certificate_subject is None or sender.certificate_subject == certificate_subject:
                return sender
        if certificate_subject and not named:
            return next((s for s in self.senders if s.facility is None
                         and s.certificate_subject == certificate_subject), None)
        return None


def _sender(entry: dict[str, Any], index: int) -> Sender:
    where = f"senders[{index}]"
    if not isinstance(entry, dict):
        raise SendersFileInvalid(f"{where} must be an object")
    facility, certificate = entry.get("facility"), entry.get("certificate_subject")
    if not facility and not certificate:
        raise SendersFileInvalid(f"{where} needs a facility (MSH-4) or a certificate_subject")
    for name in ("user_id", "principal_gln"):
        if not entry.get(name):
            raise SendersFileInvalid(f"{where} needs {name}")
    if not gln_is_valid(entry["principal_gln"]):
        raise SendersFileInvalid(f"{where}.principal_gln is not a valid GLN")
    authority = entry.get("assigning_authority")
    authorities = entry.get("assigning_authorities", [authority] if authority else [])
    if not isinstance(authorities, list) or not all(isinstance(a, str) and a.startswith("urn:oid:")
                                                    for a in authorities):
        raise SendersFileInvalid(f"{where}.assigning_authorities must be a list of urn:oid: values")
    if NOBODYS_AUTHORITIES & set(authorities):
        raise SendersFileInvalid(f"{where}.assigning_authorities may not name the EPR-SPID or AHVN13 system")
    profile = SenderProfile(
        source_id=entry.get("source_id", DEFAULT_SOURCE_ID),
        facility_type=_code(entry.get("facility_type", DEFAULT_FACILITY_TYPE)),
        practice_setting=_code(entry.get("practice_setting", DEFAULT_PRACTICE_SETTING)),
        language=entry.get("language", "fr-CH"),
        assigning_authority=entry.get("assigning_authority"),
    )
    sender = Sender(facility or None, entry.get("application") or None, entry["user_id"], entry["principal_gln"],
                    certificate or None, profile, entry.get("name"), frozenset(authorities))
    if len(sender.key) > MAX_KEY:
        raise SendersFileInvalid(f"{where}: facility, application and user_id together exceed {MAX_KEY} characters")
    return sender


def _code(value: dict[str, Any]) -> Code:
    return Code(value.get("system", SNOMED), value["code"], value.get("display"))


def ensure_dev_senders(data_dir: Path, *, gln: str, assigning_authority: str) -> Path:
    """The embedded default's DEVELOPMENT senders file: one demo hospital feeding for the demo HCP."""
    path = data_dir / "mllp-senders.DEVELOPMENT.json"
    if not path.exists():
        data = {"_comment": "DEVELOPMENT senders file written by the embedded default; configure "
                            "EPR_MLLP_SENDERS in production",
                "senders": [{"facility": "DEMO-HOSPITAL", "user_id": "demo-hospital-feed", "principal_gln": gln,
                             "name": "Demo hospital HL7 v2 feed", "assigning_authority": assigning_authority}]}
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(data, indent=2), encoding="utf-8")
    return path
