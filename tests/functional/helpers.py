"""Helpers for the functional tests: sample bundles and what the store holds."""

from __future__ import annotations

from sqlalchemy import func, select

from adapters.cara.store.schema import metadata
from gateway.samples import pdf_document, provide_bundle

from conftest import SPID


def one_document_bundle(spid: str = SPID, author_role: str = "HCP", **document) -> dict:
    """One document as `author_role` provides it (the gateway refuses another originalProviderRole)."""
    document.setdefault("title", "Discharge letter")
    document.setdefault("content", pdf_document(document["title"], ["Patient Anna Muster, born 1980-05-17"]))
    return provide_bundle(spid=spid, author_role=author_role, documents=[document])


def row_counts(runtime) -> dict[str, int]:
    """Rows per table of the record (the audit ledger aside: a refused exchange is recorded there)."""
    with runtime.engine.connect() as connection:
        return {name: connection.execute(select(func.count()).select_from(table)).scalar_one()
                for name, table in metadata.tables.items() if not name.startswith("audit_")}


def document_ids(bundle_response: dict) -> list[str]:
    return [e["response"]["location"].rsplit("/", 1)[1] for e in bundle_response["entry"]
            if "/DocumentReference/" in e["response"]["location"]]
