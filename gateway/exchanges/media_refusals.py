"""Refusals of XDM media for security reasons, in the audit ledger (besides the migration's report).

A symbolic link out of the media, a DOCTYPE (entity bomb), a climbing name, a named pipe, two members
of one name: each is an attempt on the gateway as much as a faulty export, and the ledger accounts
for it as the FHIR face accounts for a refused request. An export can hold thousands of them (one
link per document), so they are aggregated: one record per media and batch, with the count by kind
and the first source of each kind (source paths inside the export: no patient value, no content).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from audit.events import AuditRecord
from consent.principal import Principal
from gateway.exchanges.auditing import Auditor

TRANSACTION = "ITI-32"  # Distribute Document Set on Media: what an XDM export is


@dataclass(frozen=True)
class MediaRefusal:
    media: str
    source: str  # the part refused, as the report names it
    kind: str  # link-out, link-member, climbing-name, special-file, ambiguous-name, doctype


def refusal_records(*, auditor: Auditor, principal: Principal, refusals: list[MediaRefusal]) -> list[AuditRecord]:
    """One outcome-4 record per media: how many refusals of each kind, and where the first of each was."""
    by_media: dict[str, list[MediaRefusal]] = {}
    for refusal in refusals:
        by_media.setdefault(refusal.media, []).append(refusal)
    records = []
    for media, found in by_media.items():
        kinds = Counter(r.kind for r in found)
        first = {}
        for refusal in found:
            first.setdefault(refusal.kind, refusal.source)
        described = "; ".join(f"{kind} ×{count} (first: {first[kind]})" for kind, count in kinds.most_common())
        records.append(auditor.record(TRANSACTION, principal, action="C", outcome="4", outcome_description=(
            f"XDM media {media}: {len(found)} part(s) refused for security reasons: {described}")[:500]))
    return records


def record_refusals(*, auditor: Auditor, principal: Principal, refusals: list[MediaRefusal], connection=None) -> None:
    """In the caller's transaction (`connection`: with the journal rows that report them), else now."""
    records = refusal_records(auditor=auditor, principal=principal, refusals=refusals)
    if not records:
        return
    if connection is None:
        auditor.write_now(records)
    else:
        auditor.write(connection, records)
