"""The tamper-evident audit ledger on SQLAlchemy Core (SQLite or PostgreSQL).

Why a hash chain with signed checkpoints: audit records are the proof of who did what to a patient's record,
kept for years. Each record stores the SHA-256 of its predecessor's hash, its own position, its patient key and
its canonical AuditEvent JSON; changing, removing, inserting or reordering a record breaks the chain at that
record. Whoever can write the database could rebuild the whole chain, so every `checkpoint_every` records (and
on demand) the head is signed with an Ed25519 key the database does not hold: a rebuilt chain no longer matches
the signed heads, and a cut-off tail leaves a signed checkpoint pointing past the end.

Why the head is signed at every commit batch (`audit_head`, one row): with checkpoints only, the records after
the last one could be rewritten or deleted unnoticed by whoever can write the database. Each batch re-signs the
head inside its own transaction (one Ed25519 signature and one UPDATE per batch, not per record: measured in
bench/bench_ledger_head.py), so no committed record is ever unsigned. What a database writer can still do is cut
the ledger back to a head it saw earlier, with the later checkpoints deleted: the signed heads are therefore
also anchored outside the database (the SIEM stream and the witness file, `audit.witness`), and `verify_ledger`
compares against a witness.

Why `append` takes the caller's connection: the record commits or rolls back with the change it proves (fail
closed: a change that cannot be audited does not happen). Appenders are serialised so the sequence has no gaps
and no forks: PostgreSQL by a transaction-scoped advisory lock taken before the head is read; SQLite by taking
the database write lock first (a no-op UPDATE) so the head read is already inside the single writer's
transaction. `seq` is the primary key: should the serialisation ever fail, the second insert of a position
raises instead of forking the chain.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from collections.abc import Callable
from typing import NamedTuple

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from sqlalchemy import Connection, Engine, func, insert, select

from adapters.cara.store.database import driver_datetime, for_driver, insert_rows
from audit.events import AuditRecord, atc_view, canonical_json, ledger_columns, naive_utc, to_audit_event
from audit.schema import audit_checkpoint, audit_head, audit_record
from audit.signing import (
    GENESIS_HASH,
    SignatureInvalid,
    Signer,
    chain_hash,
    checkpoint_message,
    key_id_of,
    public_key_raw,
    verify,
)

_ADVISORY_LOCK = 7342002  # 7342001 is the migration lock (adapters.cara.store.database)
_PAGE = 1000


def lock_ledger(connection: Connection) -> None:
    """Become the only appender until `connection`'s transaction ends."""
    if connection.dialect.name == "postgresql":
        connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_ADVISORY_LOCK})")
    else:  # SQLite: any write statement takes the database write lock (waits on busy_timeout)
        connection.exec_driver_sql("UPDATE audit_checkpoint SET seq = seq WHERE 1 = 0")


# Appending is on every exchange's path, reads included: the statements go to the driver as written
# (no statement compilation), in its placeholder style, and a batch is multi-row INSERTs (`insert_rows`:
# the driver releases and retakes the GIL once a statement, not once a row).
_HEAD_SQL = "SELECT seq, record_hash FROM audit_record ORDER BY seq DESC LIMIT 1"
_INSERT_COLUMNS = ("seq", "recorded_at", "patient_key", "event_type", "subtype", "outcome", "professional",
                   "record_json", "prev_hash", "record_hash")


_HEAD_COLUMNS = "seq = ?, record_hash = ?, signed_at = ?, key_id = ?, signature = ?"
_HEAD_UPDATE = {d: for_driver(f"UPDATE audit_head SET {_HEAD_COLUMNS} WHERE id = 1", d) for d in ("sqlite", "postgresql")}
_HEAD_INSERT = {d: for_driver("INSERT INTO audit_head (seq, record_hash, signed_at, key_id, signature, id) "
                              "VALUES (?, ?, ?, ?, ?, 1)", d) for d in ("sqlite", "postgresql")}


class TrailPage(NamedTuple):
    """One ITI-81 page: `next_after` = (recorded_at UTC, seq) of its last record when more follow;
    `through` = the newest seq counted (the bound later pages keep)."""

    total: int
    events: list[dict]
    next_after: tuple[datetime, int] | None
    through: int | None


class PreparedRecord(NamedTuple):
    """An AuditRecord made ready for the ledger (canonical JSON and query columns), before it has a
    place in the chain. Preparing is most of an append's work and needs no lock: the caller does it."""

    patient_key: str | None
    record_json: str
    recorded_at: datetime
    event_type: str
    subtype: str | None
    outcome: str
    professional: str | None
    exchange: str | None = None  # not stored: the transaction on an exchange's first record (metrics)


def prepare(record: AuditRecord, patient_key: str | None, *, first_of_exchange: bool = True) -> PreparedRecord:
    event = to_audit_event(record)
    columns = ledger_columns(event)
    return PreparedRecord(patient_key, canonical_json(event), columns["recorded_at"], columns["event_type"],
                          columns["subtype"], columns["outcome"], columns["professional"],
                          record.transaction if first_of_exchange else None)


class DatabaseAuditLedger:
    def __init__(self, *, engine: Engine, signing_key: Ed25519PrivateKey, key_id: str, checkpoint_every: int = 100):
        if key_id != key_id_of(signing_key.public_key()):
            raise ValueError("key_id is not the id of signing_key (see audit.signing.key_id_of)")
        if checkpoint_every < 1:
            raise ValueError("checkpoint_every must be at least 1")
        self._engine = engine
        self._signing_key = signing_key
        self._signer = Signer(signing_key)
        self._key_id = key_id
        self._checkpoint_every = checkpoint_every
        self._head_listeners: list[Callable[[Connection, list[PreparedRecord], float], None]] = []

    def on_head_signed(self, listener: Callable[[Connection, list[PreparedRecord], float], None]) -> None:
        """`listener(connection, records, perf_counter before the lock)`, cheap and non-blocking, after each
        batch signed the head, before its commit: the witness writer wakes; the metrics count at the commit."""
        self._head_listeners.append(listener)

    @property
    def public_keys(self) -> dict[str, Ed25519PublicKey]:
        """The verification key set for this ledger's signer ({key_id: public key})."""
        return {self._key_id: self._signing_key.public_key()}

    # -- writing ---------------------------------------------------------------------------------
    def append(self, connection: Connection, record: AuditRecord, *, patient_key: str | None) -> int:
        """Add `record` inside the caller's open transaction; return its sequence number."""
        return self.append_many(connection, [prepare(record, patient_key)])[-1]

    def append_many(self, connection: Connection, prepared: list[PreparedRecord]) -> list[int]:
        """Add several records in chain order inside one transaction (one lock, one head read, one
        insert): what a group commit of concurrent reads uses."""
        if not prepared:
            return []
        started, dialect = time.perf_counter(), connection.dialect.name
        lock_ledger(connection)
        head = connection.exec_driver_sql(_HEAD_SQL).first()
        seq, prev_hash = (head[0], head[1]) if head else (0, GENESIS_HASH)
        rows, checkpoints = [], []
        for record in prepared:
            seq += 1
            record_hash = chain_hash(prev_hash=prev_hash, seq=seq, patient_key=record.patient_key,
                                     record_json=record.record_json)
            rows.append((seq, driver_datetime(record.recorded_at, dialect), record.patient_key, record.event_type,
                         record.subtype, record.outcome, record.professional, record.record_json, prev_hash, record_hash))
            if seq % self._checkpoint_every == 0:
                checkpoints.append((seq, record_hash))
            prev_hash = record_hash
        insert_rows(connection, "audit_record", _INSERT_COLUMNS, rows)
        for checkpoint_seq, checkpoint_hash in checkpoints:
            self._write_checkpoint(connection, checkpoint_seq, checkpoint_hash)
        self._sign_head(connection, seq, prev_hash)
        for listener in self._head_listeners:
            listener(connection, prepared, started)
        return [row[0] for row in rows]

    def _sign_head(self, connection: Connection, seq: int, record_hash: str) -> None:
        """The head after this batch, signed, in the batch's transaction (under the ledger lock)."""
        dialect = connection.dialect.name
        signed_at = datetime.now(UTC).replace(tzinfo=None)
        signature = self._signer.sign(checkpoint_message(
            seq=seq, record_hash=record_hash, signed_at=signed_at, key_id=self._key_id))
        values = (seq, record_hash, driver_datetime(signed_at, dialect), self._key_id, signature)
        if not connection.exec_driver_sql(_HEAD_UPDATE[dialect], values).rowcount:
            connection.exec_driver_sql(_HEAD_INSERT[dialect], values)

    def append_now(self, record: AuditRecord, *, patient_key: str | None) -> int:
        """Append in a transaction of its own (for events that change nothing else, e.g. a refusal)."""
        with self._engine.begin() as connection:
            return self.append(connection, record, patient_key=patient_key)

    def checkpoint(self, connection: Connection | None = None) -> int | None:
        """Sign the current head (if not signed yet); return its seq, None for an empty ledger.
        Call it before an export or at shutdown so the latest records are covered too."""
        if connection is None:
            with self._engine.begin() as own:
                return self.checkpoint(own)
        lock_ledger(connection)
        head = connection.exec_driver_sql(_HEAD_SQL).first()
        if head is None:
            return None
        signed = connection.execute(select(audit_checkpoint.c.seq).where(audit_checkpoint.c.seq == head.seq)).first()
        if signed is None:
            self._write_checkpoint(connection, head.seq, head.record_hash)
        return head.seq

    def _write_checkpoint(self, connection: Connection, seq: int, record_hash: str) -> None:
        signed_at = datetime.now(UTC).replace(tzinfo=None)
        message = checkpoint_message(seq=seq, record_hash=record_hash, signed_at=signed_at, key_id=self._key_id)
        connection.execute(insert(audit_checkpoint).values(
            seq=seq, record_hash=record_hash, signed_at=signed_at, key_id=self._key_id,
            public_key=public_key_raw(self._signing_key.public_key()),
            signature=self._signer.sign(message)))

    # -- reading ---------------------------------------------------------------------------------
    def records_for_patient(self, *, patient_key: str, since: datetime | None = None,
                            until: datetime | None = None) -> list[dict]:
        """The patient's trail (CH:ATC, ITI-81): the events marked patient-visible, as `atc_view`
        shapes them, oldest first. Other events about the patient are not part of the trail."""
        query = (select(audit_record.c.record_json)
                 .where(audit_record.c.patient_key == patient_key, audit_record.c.subtype.is_not(None))
                 .order_by(audit_record.c.recorded_at, audit_record.c.seq))
        if since is not None:
            query = query.where(audit_record.c.recorded_at >= naive_utc(since))
        if until is not None:
            query = query.where(audit_record.c.recorded_at <= naive_utc(until))
        with self._engine.connect() as connection:
            return [atc_view(json.loads(row.record_json)) for row in connection.execute(query)]

    def page_for_patient(self, *, patient_key: str, since: datetime | None = None, until: datetime | None = None,
                         offset: int = 0, count: int = 20, after: tuple[datetime, int] | None = None,
                         through: int | None = None) -> TrailPage:
        """One page of the patient's trail (ITI-81) and its total, from the same query as
        `records_for_patient`, so a long trail is never read whole for one answer. Paged by `offset`, or
        by keyset: strictly after `after` = (recorded_at, seq) of the previous page's last record, among
        the records up to seq `through` (the trail as its first page saw it: every read of the trail
        appends to it, so without the bound a client paging it would never see the same total twice)."""
        where = [audit_record.c.patient_key == patient_key, audit_record.c.subtype.is_not(None)]
        if since is not None:
            where.append(audit_record.c.recorded_at >= naive_utc(since))
        if until is not None:
            where.append(audit_record.c.recorded_at <= naive_utc(until))
        if through is not None:
            where.append(audit_record.c.seq <= through)
        counted = select(func.count(), func.max(audit_record.c.seq)).select_from(audit_record).where(*where)
        if after is not None:
            recorded_at, seq = naive_utc(after[0]), after[1]
            where.append((audit_record.c.recorded_at > recorded_at)
                         | ((audit_record.c.recorded_at == recorded_at) & (audit_record.c.seq > seq)))
        # One row more than the page: whether another page follows.
        page = (select(audit_record.c.record_json, audit_record.c.recorded_at, audit_record.c.seq).where(*where)
                .order_by(audit_record.c.recorded_at, audit_record.c.seq).offset(offset).limit(count + 1))
        with self._engine.connect() as connection:
            total, newest = connection.execute(counted).one()
            rows = connection.execute(page).all() if count else []
        more, rows = len(rows) > count, rows[:count]
        return TrailPage(total, [atc_view(json.loads(row.record_json)) for row in rows],
                         (rows[-1].recorded_at.replace(tzinfo=UTC), rows[-1].seq) if more else None,
                         through if through is not None else newest)

    def all_records(self, *, since: datetime | None = None) -> list[dict]:
        """Every stored AuditEvent (the full security event) recorded at or after `since`, in chain order."""
        query = select(audit_record.c.record_json).order_by(audit_record.c.seq)
        if since is not None:
            query = query.where(audit_record.c.recorded_at >= naive_utc(since))
        with self._engine.connect() as connection:
            return [json.loads(row.record_json) for row in connection.execute(query)]


@dataclass(frozen=True)
class VerifyReport:
    ok: bool
    records_checked: int  # records found intact before the first problem
    checkpoints_checked: int
    first_problem: str | None  # names the record or checkpoint, e.g. "record 17 was changed"
    last_seq: int  # the last record read
    unsigned_records: int  # records after the last valid checkpoint: intact, but not yet signed


def verify_ledger(*, engine: Engine, public_keys: dict[str, Ed25519PublicKey],
                  checkpoint_every: int | None = None, witness: SignedHead | None = None) -> VerifyReport:
    """Walk the whole chain and every checkpoint; stop at the first problem and name it.

    With `checkpoint_every` (the ledger's setting), a record at a multiple of it without its signed
    checkpoint is a problem too: otherwise deleting the checkpoints would let a rebuilt chain pass.
    The signed head must cover the last record exactly (nothing appended, rewritten or deleted after
    it). `witness`: the latest signed head kept outside the database (`audit.witness`): the ledger
    must reach it with the same hash, else it was cut back (or rewritten) and the cut is named.
    """
    if not public_keys:
        raise ValueError("public_keys is empty: nothing could be verified")
    state = _Walk(public_keys, checkpoint_every)
    with engine.connect() as connection:
        # Checkpoints and head first: records only grow, so each one read here has its record below.
        state.checkpoints = {row.seq: row for row in connection.execute(select(audit_checkpoint))}
        head = connection.execute(select(audit_head).where(audit_head.c.id == 1)).first()
        state.pinned = {h.seq for h in (head, witness) if h is not None}
        after = 0
        while state.problem is None:
            rows = connection.execute(select(audit_record).where(audit_record.c.seq > after)
                                      .order_by(audit_record.c.seq).limit(_PAGE)).all()
            for row in rows:
                if not state.check(row):
                    break
            if len(rows) < _PAGE:
                break
            after = rows[-1].seq
    if state.problem is None:
        beyond = sorted(seq for seq in state.checkpoints if seq > state.last_seq)
        if beyond:
            state.problem = (f"the ledger ends at {state.last_seq} but checkpoint {beyond[-1]} covers records "
                             "after it (truncated tail)")
    if state.problem is None:
        state.problem = _head_problem(state, head, public_keys)
    if state.problem is None and witness is not None:
        state.problem = _witness_problem(state, witness, public_keys)
    if state.problem is None and head is not None:
        state.last_signed = head.seq
    return VerifyReport(ok=state.problem is None, records_checked=state.records_checked,
                        checkpoints_checked=state.checkpoints_checked, first_problem=state.problem,
                        last_seq=state.last_seq, unsigned_records=state.last_seq - state.last_signed)


@dataclass(frozen=True)
class SignedHead:
    """A signed statement "the chain up to `seq` ends in `record_hash`" (the head, a checkpoint, a
    witness line): what `audit.signing.checkpoint_message` covers."""

    seq: int
    record_hash: str
    signed_at: datetime
    key_id: str
    signature: bytes

    def verifies(self, public_keys: dict[str, Ed25519PublicKey]) -> bool:
        key = public_keys.get(self.key_id)
        if key is None:
            return False
        try:
            verify(public_key=key, message=checkpoint_message(seq=self.seq, record_hash=self.record_hash,
                                                              signed_at=self.signed_at, key_id=self.key_id),
                   signature=self.signature)
        except SignatureInvalid:
            return False
        return True


def read_head(engine: Engine) -> SignedHead | None:
    """The signed head as the database holds it (what the witness writer and the shipper anchor)."""
    with engine.connect() as connection:
        row = connection.execute(select(audit_head).where(audit_head.c.id == 1)).first()
    return None if row is None else SignedHead(row.seq, row.record_hash, row.signed_at, row.key_id, row.signature)


def _head_problem(state: _Walk, head, public_keys) -> str | None:
    if head is None:
        return None if state.last_seq == 0 else "the signed head is missing (deleted, or written before it existed)"
    signed = SignedHead(head.seq, head.record_hash, head.signed_at, head.key_id, head.signature)
    if not signed.verifies(public_keys):
        return f"the signed head at {head.seq} has a bad signature or an unknown key"
    if head.seq > state.last_seq:
        return f"the ledger ends at {state.last_seq} but its signed head is at {head.seq} (records deleted)"
    if state.hash_at.get(head.seq) != head.record_hash:
        return f"record {head.seq} does not match the signed head (the chain was rewritten)"
    if head.seq < state.last_seq:
        return (f"records {head.seq + 1}-{state.last_seq} follow the signed head at {head.seq}: they were "
                "written outside the gateway")
    return None


def _witness_problem(state: _Walk, witness: SignedHead, public_keys) -> str | None:
    stamp = witness.signed_at.strftime("%Y-%m-%dT%H:%M:%SZ")
    if not witness.verifies(public_keys):
        return f"the witness's head at {witness.seq} has a bad signature or an unknown key"
    if witness.seq > state.last_seq:
        return (f"the ledger was cut back: it ends at {state.last_seq} but the witness holds a head signed "
                f"at {stamp} covering record {witness.seq} (records {state.last_seq + 1}-{witness.seq} deleted)")
    if state.hash_at.get(witness.seq) != witness.record_hash:
        return (f"record {witness.seq} does not match the head the witness holds (signed at {stamp}): the "
                "ledger was cut back and rewritten from there")
    return None


class _Walk:
    """The verifier's state while it reads records in order (one record per `check`)."""

    def __init__(self, public_keys: dict[str, Ed25519PublicKey], checkpoint_every: int | None):
        self.public_keys = public_keys
        self.checkpoint_every = checkpoint_every
        self.checkpoints: dict = {}
        self.pinned: set[int] = set()  # seqs whose hash the signed head or the witness states
        self.hash_at: dict[int, str] = {}
        self.problem: str | None = None
        self.records_checked = self.checkpoints_checked = self.last_seq = self.last_signed = 0
        self.prev_hash, self.prev_prev_hash = GENESIS_HASH, None

    def check(self, row) -> bool:
        seq = row.seq
        expected = self.last_seq + 1
        if seq != expected:
            self.problem = f"record {expected} is missing (gap between {expected - 1} and {seq})"
        elif row.prev_hash != self.prev_hash:
            if row.prev_hash == self.prev_prev_hash:
                self.problem = f"record {seq - 1} is out of order / inserted (record {seq} links to {seq - 2})"
            else:
                self.problem = f"record {seq} is out of order / inserted (it does not link to record {seq - 1})"
        elif chain_hash(prev_hash=row.prev_hash, seq=seq, patient_key=row.patient_key,
                        record_json=row.record_json) != row.record_hash:
            self.problem = f"record {seq} was changed"
        else:
            self.problem = _columns_problem(row) or self._checkpoint_problem(row)
        if self.problem is not None:
            return False
        self.records_checked += 1
        self.last_seq = seq
        if seq in self.pinned:
            self.hash_at[seq] = row.record_hash
        self.prev_prev_hash, self.prev_hash = self.prev_hash, row.record_hash
        return True

    def _checkpoint_problem(self, row) -> str | None:
        checkpoint = self.checkpoints.get(row.seq)
        if checkpoint is None:
            if self.checkpoint_every and row.seq % self.checkpoint_every == 0:
                return f"checkpoint at {row.seq} is missing (one is signed every {self.checkpoint_every} records)"
            return None
        public_key = self.public_keys.get(checkpoint.key_id)
        if public_key is None:
            return f"checkpoint at {row.seq} is signed by an unknown key {checkpoint.key_id}"
        message = checkpoint_message(seq=checkpoint.seq, record_hash=checkpoint.record_hash,
                                     signed_at=checkpoint.signed_at, key_id=checkpoint.key_id)
        try:
            verify(public_key=public_key, message=message, signature=checkpoint.signature)
        except SignatureInvalid:
            return f"checkpoint at {row.seq} has a bad signature"
        if checkpoint.record_hash != row.record_hash:
            return f"checkpoint at {row.seq} does not match record {row.seq} (the chain was rebuilt)"
        self.checkpoints_checked += 1
        self.last_signed = row.seq
        return None


def _columns_problem(row) -> str | None:
    """The query columns must agree with the hashed JSON, or a record could be hidden from a
    patient's trail (patient-visible flag, date) without touching the JSON."""
    try:
        expected = ledger_columns(json.loads(row.record_json))
    except (ValueError, KeyError, TypeError):
        return f"record {row.seq} was changed (its AuditEvent cannot be read)"
    for column, value in expected.items():
        if getattr(row, column) != value:
            return f"record {row.seq} was changed (its {column} column disagrees with its AuditEvent)"
    return None
