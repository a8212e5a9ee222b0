"""ITI-67's two statements (the count and the page) as plain SQL run on the driver's connection.

Why not SQLAlchemy Core here, as everywhere else in the store: a search is the gateway's hottest
path, and building, caching and executing a Core statement with expanding IN lists costs several
times what SQLite takes to answer it (bench/README.md). The SQL below is built from
a `DocumentQuery` only — every value is a bound parameter, never text — and is written once for both
dialects; only the placeholder and the way datetimes are bound differ.

The patient's merged patients are expanded in the statement (a recursive CTE over `patient_link`),
so a search is two statements on one connection whatever the patient's history.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from adapters.cara.mhd_search import DateFilter, DocumentQuery
from adapters.cara.store.database import driver_datetime, for_driver

# The patient and, transitively, every patient merged into it while the link is active.
_PATIENTS = ("WITH RECURSIVE merged(pid) AS (SELECT CAST(? AS VARCHAR(64)) "
             "UNION SELECT l.retired_pid FROM patient_link l JOIN merged m ON l.surviving_pid = m.pid WHERE l.active) ")
_ROW_COLUMNS = "e.id, e.unique_id, e.status, e.sealed_key, e.sealed, e.version"

# Date filters on DocumentReference.date, or on the service period with open ends taking the other end.
_DATE_LOW = {"date": "e.date", "period": "COALESCE(e.period_start, e.period_end)"}
_DATE_HIGH = {"date": "e.date", "period": "COALESCE(e.period_end, e.period_start)"}


@dataclass(frozen=True)
class SearchStatements:
    count_sql: str
    page_sql: str  # (id, status, version, created_seq) of the page's entries, newest first
    params: tuple[Any, ...]  # for the count
    page_params: tuple[Any, ...]  # for the page, which adds (limit, offset)


def build(query: DocumentQuery, *, dialect: str) -> SearchStatements:
    """The statements for the query's patient (with its merged patients), in the driver's paramstyle."""
    where: list[str] = ["e.patient_pid IN (SELECT pid FROM merged)"]
    params: list[Any] = [query.patient_pid]
    if query.matches_nothing:  # e.g. status=current&status=superseded (ANDed: an entry has one status)
        where.append("1 = 0")
    if query.statuses:
        where.append(_in("e.status", len(query.statuses)))
        params += query.statuses
    else:  # a deleted entry (CH:MHD-1, DADM) is never found; its versions and audit records stay
        where.append("e.status <> 'deleted'")
    if query.confidentiality is not None:
        if not query.confidentiality:
            where.append("1 = 0")
        else:
            where.append(_in("e.confidentiality", len(query.confidentiality)))
            params += query.confidentiality
    if query.levels_by_patient is not None:
        # A merged record: each patient's documents at the levels decided for that patient only.
        alternatives = []
        for pid, levels in query.levels_by_patient:
            if levels:
                alternatives.append(f"(e.patient_pid = ? AND {_in('e.confidentiality', len(levels))})")
                params += [pid, *levels]
        where.append("(" + (" OR ".join(alternatives) or "1 = 0") + ")")
    for token in query.tokens:
        alternatives, values = [], []
        for system, value in token.alternatives:
            parts = []
            if system is not None:
                if system:
                    parts.append("t.system = ?")
                    values.append(system)
                else:
                    parts.append("(t.system IS NULL OR t.system = '')")
            if value is not None:
                parts.append("t.value = ?")
                values.append(value)
            alternatives.append("(" + " AND ".join(parts or ["1 = 1"]) + ")")
        where.append("EXISTS (SELECT 1 FROM document_token t WHERE t.entry_id = e.id AND t.param = ? AND ("
                     + " OR ".join(alternatives) + "))")
        params += [token.param, *values]
    for date in query.dates:
        condition, values = _date_condition(date)
        where.append(condition)
        params += [driver_datetime(v, dialect) for v in values]
    if query.through is not None:
        where.append("e.created_seq <= ?")
        params.append(query.through)
    condition = " AND ".join(where)
    count_sql = f"{_PATIENTS}SELECT COUNT(*) FROM document_entry e WHERE {condition}"
    page_params = list(params)
    if query.after is not None:  # keyset: strictly after the previous page's last entry, in the order below
        condition += " AND (e.created_seq < ? OR (e.created_seq = ? AND e.id < ?))"
        page_params += [query.after[0], query.after[0], query.after[1]]
    # Both read the covering index `ix_document_entry_search` only, never a table row: the gateway
    # keeps opened entries in memory, so rows are read (`rows_sql`) just for the entries it lacks.
    page_sql = (f"{_PATIENTS}SELECT e.id, e.status, e.version, e.created_seq FROM document_entry e "
                f"WHERE {condition} ORDER BY e.created_seq DESC, e.id DESC LIMIT ? OFFSET ?")
    return SearchStatements(for_driver(count_sql, dialect), for_driver(page_sql, dialect), tuple(params),
                            tuple(page_params))


def rows_sql(size: int, *, dialect: str) -> str:
    """The sealed rows of `size` entries by id, each with the time its version was stored (its
    meta.lastUpdated, as `MetadataVersions.written_at` reads it): version 1 when its submission set
    was, a later one when it replaced the one before. Two primary-key joins, no statement per entry."""
    return for_driver(
        f"SELECT {_ROW_COLUMNS}, CASE WHEN e.version > 1 THEN v.replaced_at ELSE s.submitted_at END "
        "FROM document_entry e "
        "LEFT JOIN document_entry_version v ON e.version > 1 "
        "AND v.id = e.id || '|' || CAST(e.version - 1 AS VARCHAR(12)) "
        "LEFT JOIN submission_set s ON e.version = 1 AND s.id = e.submission_set_id "
        f"WHERE {_in('e.id', size)}", dialect)


def _in(column: str, size: int) -> str:
    return f"{column} IN ({', '.join('?' * size)})"


def _date_condition(date: DateFilter) -> tuple[str, tuple[datetime, ...]]:
    low, high = _DATE_LOW[date.param], _DATE_HIGH[date.param]
    return {
        "eq": (f"({low} >= ? AND {high} < ?)", (date.start, date.end)),
        "ge": (f"{high} >= ?", (date.start,)),
        "gt": (f"{high} >= ?", (date.end,)),
        "le": (f"{low} < ?", (date.end,)),
        "lt": (f"{low} < ?", (date.start,)),
    }[date.prefix]
