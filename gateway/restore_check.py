"""`epr-gateway check-restore`: is the gateway the EPR_* settings point at a faithful restore? (Part of
the composition root.) Run on a restored data directory (`. NEW/restored.env`) or a point-in-time
restore of PostgreSQL; it changes nothing.

- every document's metadata and bytes open under the restored key set, and the bytes are those stored
  (SHA-1 and size as recorded);
- every sealed value's data key unwraps (patients, policies, held messages…, every table with one);
- the audit ledger verifies (chain, checkpoints, signed head) against the restored witness;
- the rows per table, and the recovery point: the time of the last audit record, the last exchange the
  restore holds. With the backup's manifest (`--expect`, or the one `restore` left) both must equal it
  (the embedded default's snapshot); a PostgreSQL restore is to the time pgBackRest was given.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from adapters.cara.crypto import Keyring
from adapters.cara.store.database import make_engine
from adapters.cara.store.restore_checks import check_data_keys, check_documents, table_counts
from audit.ledger import verify_ledger
from audit.signing import load_signing_key
from audit.witness import WitnessUnreadable, read_witness
from gateway.backup import Manifest, recovery_point
from gateway.settings import Settings


@dataclass
class RestoreCheck:
    lines: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)
    recovery_point: dict | None = None

    @property
    def ok(self) -> bool:
        return not self.problems


def check_restore(settings: Settings, *, expect: Manifest | None = None) -> RestoreCheck:
    result = RestoreCheck()
    engine = make_engine(settings.resolved_database_url)
    try:
        keyring = Keyring.load(settings.keyring_path)
        documents = check_documents(engine=engine, keyring=keyring)
        result.lines.append(f"documents: {documents.checked} checked, {documents.failed} do not open or differ")
        result.problems += documents.problems
        keys = check_data_keys(engine=engine, keyring=keyring)
        result.lines.append(f"sealed values: {keys.checked} data keys, {keys.failed} do not unwrap")
        result.problems += keys.problems
        result.problems += _ledger(settings, engine, result)
        result.counts = table_counts(engine)
        result.recovery_point = recovery_point(engine)
    finally:
        engine.dispose()
    result.lines.append("rows: " + ", ".join(f"{n} {t}" for t, n in result.counts.items() if n))
    point = result.recovery_point
    result.lines.append(f"recovery point: audit record {point['seq']} at {point['recorded_at']} UTC" if point
                        else "recovery point: no audit record")
    if expect is not None and expect.store == "postgresql":  # pgBackRest restored to a chosen time, not to this
        result.lines.append(f"the data backup saw audit record {expect.recovery_point['seq']}: the database was "
                            "restored to its own target by pgBackRest" if expect.recovery_point else "")
    elif expect is not None:
        differing = {t: (expect.counts.get(t), n) for t, n in result.counts.items() if expect.counts.get(t, 0) != n}
        if differing:
            result.problems.append("rows differ from the backup's manifest: " + ", ".join(
                f"{t} {was} → {now}" for t, (was, now) in differing.items()))
        if expect.recovery_point != point:
            result.problems.append(f"the recovery point {point} is not the backup's {expect.recovery_point}")
    return result


def _ledger(settings: Settings, engine, result: RestoreCheck) -> list[str]:
    key_id, key = load_signing_key(settings.audit_signing_key_path)
    public_keys = {key_id: key.public_key()}
    try:
        witnessed = read_witness(settings.audit_witness_path, public_keys).latest
    except WitnessUnreadable as error:
        witnessed, problem = None, str(error)
    else:
        problem = None
    report = verify_ledger(engine=engine, public_keys=public_keys, checkpoint_every=settings.audit_checkpoint_every,
                           witness=witnessed)
    result.lines.append(f"audit ledger: {report.records_checked} records, {report.checkpoints_checked} checkpoints"
                        + (f", witness at {witnessed.seq}" if witnessed else ""))
    problems = [f"audit ledger: {report.first_problem}"] if report.first_problem else []
    if problem and report.last_seq:
        problems.append(f"audit ledger: {problem}")
    return problems
