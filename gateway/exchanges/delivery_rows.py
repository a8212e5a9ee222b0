"""The outbox's participant in every change to the record's documents (issue 24 item 1): registered
with `RecordChanges` by the composition root when communities are configured and EPR_DELIVERY is not
`off`, it writes the delivery rows inside the transaction that stores the documents, so a document
is stored if and only if its deliveries are due (a failing write fails the store).

- Each created document: one row per community, kind `provide`, or `replace` when it replaces another
  document (the row then depends on the row that put the original into that community, and is sent
  as an RPLC to the entryUUID the community holds it under).
- Each CH:MHD-1 change (an update, the patient's relabelling, a document administrator's deletion)
  of a document that has (or will have) a row in that community: one row, kind `update` or `delete`,
  depending on that row. What the deliverer does with it is in `delivery.py`: a community whose
  transport cannot change metadata (cara's XDS.b Document Source, a technical user that may only
  provide) gets none sent and the row says so (`not-supported`, with what an operator does), unless
  the document itself was sent after the change (then the community already holds that version).
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import Connection

from adapters.cara.store.outbox import DatabaseOutbox, NewDelivery
from gateway.exchanges.record_changes import ChangedEntry, RecordChanges, StoredSubmission


class DeliveryRows:
    def __init__(self, *, outbox: DatabaseOutbox, communities: Sequence[str]):
        if not communities:
            raise ValueError("delivery rows need at least one community")
        self.outbox = outbox
        self.communities = tuple(communities)

    def register(self, changes: RecordChanges) -> None:
        changes.on_documents_stored(self.documents_stored)
        changes.on_metadata_changed(self.metadata_changed)

    def documents_stored(self, connection: Connection, stored: Sequence[StoredSubmission]) -> None:
        rows = []
        for submission in stored:
            pid = submission.submission_set.patient_pid  # the patient it was filed under: the order is theirs
            for document in submission.documents:
                entry = document.entry
                replaced = next((r.target_entry_id for r in entry.relations if r.code == "replaces"), None)
                rows.extend(NewDelivery(community=community, kind="replace" if replaced else "provide",
                                        entry_id=entry.entry_id, version=entry.version, unique_id=entry.unique_id,
                                        patient_pid=pid, confidentiality=entry.confidentiality_level,
                                        original_entry_id=replaced)
                            for community in self.communities)
        self.outbox.enqueue(connection, rows)

    def metadata_changed(self, connection: Connection, changed: Sequence[ChangedEntry]) -> None:
        rows = []
        for change in changed:
            entry = change.stored
            deleted = entry.status == "deleted" and change.previous.status != "deleted"
            for community in self.communities:
                # A document this community never was to receive (stored before it was configured) is
                # not the community's business: no row.
                if self.outbox.sending_row(connection, community, entry.entry_id) is None:
                    continue
                rows.append(NewDelivery(community=community, kind="delete" if deleted else "update",
                                        entry_id=entry.entry_id, version=entry.version, unique_id=entry.unique_id,
                                        patient_pid=entry.patient_pid, confidentiality=entry.confidentiality_level,
                                        original_entry_id=entry.entry_id))
        self.outbox.enqueue(connection, rows)
