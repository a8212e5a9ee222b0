"""The gateway's metrics: a few named instruments and the one function each part calls to record.

Why one module with functions, not instruments handed around: the faces, the use-cases, the root and
helpers still to come (the community deliverer) record through the same small API, and the rules that
keep the series bounded live here once — a label value is always one of a known set (a route template,
a known method, a transaction name, a decision), never a path, an identifier, a GLN or a token.

Several worker processes: `prometheus_client`'s multiprocess mode. Each process writes its values to
files under one directory (`enable_multiprocess`, called by `epr-gateway serve` before any worker
starts); the metrics listener of the serving process (`gateway/metrics_listener.py`) merges them.
Without it (tests, one-off commands) the values stay in this process (`LOCAL`).

Instruments are made on first use, so that the mode chosen at start applies to every one of them.
"""

from __future__ import annotations

import os
import threading

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, values

MULTIPROCESS_ENV = "PROMETHEUS_MULTIPROC_DIR"
LOCAL = CollectorRegistry()  # this process's values when not in multiprocess mode

# Label values outside these sets are recorded as "other": a client chooses its method and an HL7 v2
# sender its message type, and neither may add series.
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"})
TRANSACTIONS = frozenset({"ITI-65", "ITI-67", "ITI-68", "ITI-78", "ITI-81", "ITI-83", "ITI-104", "ITI-119",
                          "CH-MHD-1", "PPQ-3", "PPQ-4", "PPQ-5", "authentication", "identity-review",
                          "notifications", "portal-sign-in", "ITI-32"})
HL7_TRIGGERS = frozenset({"MDM^T02", "MDM^T06", "MDM^T10", "ORU^R01", "ADT^A08", "ADT^A40"})
OUTCOMES = {"0": "success", "4": "minor-failure", "8": "serious-failure", "12": "major-failure"}
UNMATCHED_ROUTE = "unmatched"

_SECONDS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_RECORDS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000)


def enable_multiprocess(directory: str | os.PathLike) -> None:
    """Record into files under `directory` (which the caller has emptied): from now on in this process
    and in every process it starts (the environment is inherited). Instruments already made keep
    their values in memory, so this is called before any is used."""
    os.environ[MULTIPROCESS_ENV] = str(directory)
    values.ValueClass = values.get_value_class()
    global _made
    _made = None  # any made before (in memory) are made again, into the files


def multiprocess_directory() -> str | None:
    return os.environ.get(MULTIPROCESS_ENV) or None


class _Instruments:
    def __init__(self) -> None:
        registry = None if multiprocess_directory() else LOCAL
        self.requests = Counter("epr_http_requests", "HTTP requests answered, by route template, method and status",
                                ["route", "method", "status"], registry=registry)
        self.request_seconds = Histogram("epr_http_request_duration_seconds",
                                         "Time to answer an HTTP request, by route template and method",
                                         ["route", "method"], buckets=_SECONDS, registry=registry)
        self.exchanges = Counter("epr_exchanges", "Exchanges recorded in the audit ledger (committed), by "
                                 "transaction and outcome", ["transaction", "outcome"], registry=registry)
        self.decisions = Counter("epr_consent_decisions", "Access decisions of the policy decision point, by "
                                 "action and result", ["action", "result"], registry=registry)
        self.audit_batch = Histogram("epr_audit_batch_records", "Audit records appended per ledger transaction",
                                     buckets=_RECORDS, registry=registry)
        self.audit_commit = Histogram("epr_audit_commit_duration_seconds", "From taking the ledger's lock to the "
                                      "commit of the transaction holding the records", buckets=_SECONDS,
                                      registry=registry)
        self.pool_wait = Histogram("epr_db_pool_wait_seconds", "Time to get a database connection from the pool",
                                   buckets=_SECONDS, registry=registry)
        self.pool_checked_out = Gauge("epr_db_pool_connections_in_use", "Database connections checked out",
                                      multiprocess_mode="livesum", registry=registry)
        self.redis = Histogram("epr_redis_round_trip_duration_seconds", "Redis round trips, by command",
                               ["command"], buckets=_SECONDS, registry=registry)
        self.mllp_messages = Counter("epr_mllp_messages", "HL7 v2 messages answered over MLLP, by trigger (MSH-9) "
                                     "and acknowledgement code (MSA-1)", ["trigger", "ack"], registry=registry)
        self.mllp_in_flight = Gauge("epr_mllp_inbox_messages", "HL7 v2 messages received and not yet answered",
                                    multiprocess_mode="livesum", registry=registry)
        self.deliveries = Counter("epr_deliveries", "Delivery attempts into a community, by community and outcome",
                                  ["community", "state"], registry=registry)
        self._children: dict[tuple, object] = {}
        self._lock = threading.Lock()

    def child(self, instrument, *labels: str):
        """`instrument.labels(*labels)`, remembered (the library's own look-up takes a lock and
        rebuilds the label tuple on every call; this path runs on every request)."""
        key = (id(instrument),) + labels
        found = self._children.get(key)
        if found is None:
            with self._lock:
                found = self._children[key] = instrument.labels(*labels)
        return found


_made: _Instruments | None = None
_making = threading.Lock()


def _instruments() -> _Instruments:
    global _made
    if _made is None:
        with _making:  # two threads' first records must not make (and register) the instruments twice
            if _made is None:
                _made = _Instruments()
    return _made


# -- what the parts record ----------------------------------------------------------------------
def request_served(*, route: str, method: str, status: int, seconds: float) -> None:
    """An HTTP answer. `route` is the matched route's template (`/fhir/Binary/{id}`), never the path."""
    made = _instruments()
    method = method if method in METHODS else "other"
    made.child(made.requests, route, method, str(status)).inc()
    made.child(made.request_seconds, route, method).observe(seconds)


def exchanges_committed(transactions: list[tuple[str, str]]) -> None:
    """(transaction, outcome code) of each exchange whose audit record has just committed."""
    made = _instruments()
    for transaction, outcome in transactions:
        made.child(made.exchanges, transaction_label(transaction), OUTCOMES.get(outcome, "other")).inc()


def transaction_label(transaction: str) -> str:
    """A known transaction; HL7 v2 ones by trigger (`HL7v2 MDM^T02`), any other message type as one."""
    if transaction in TRANSACTIONS:
        return transaction
    if transaction.startswith("HL7v2"):
        trigger = transaction[6:]
        return transaction if trigger in HL7_TRIGGERS else "HL7v2 other"
    return "other"


def consent_decided(*, action: str, result: str) -> None:
    """`result`: permit, permit-notify (an emergency access the patient is told of), deny; a search's
    visible levels: some-visible, none-visible."""
    made = _instruments()
    made.child(made.decisions, action, result).inc()


def audit_batch_committed(*, records: int, seconds: float) -> None:
    made = _instruments()
    made.audit_batch.observe(records)
    made.audit_commit.observe(seconds)


def pool_waited(seconds: float) -> None:
    _instruments().pool_wait.observe(seconds)


def pool_connections(delta: int) -> None:
    _instruments().pool_checked_out.inc(delta)


def redis_round_trip(*, command: str, seconds: float) -> None:
    made = _instruments()
    made.child(made.redis, command).observe(seconds)


ACK_CODES = frozenset({"AA", "AE", "AR"})


def mllp_answered(*, trigger: str, ack: str) -> None:
    """A message answered: its MSH-9 (`MDM^T02`; any other as "other") and the ACK's MSA-1. Stored documents
    are also counted as the exchanges their audit records name (ITI-65), refusals as `HL7v2 <trigger>`."""
    made = _instruments()
    made.child(made.mllp_messages, trigger if trigger in HL7_TRIGGERS else "other",
               ack if ack in ACK_CODES else "other").inc()


def mllp_in_flight(delta: int) -> None:
    _instruments().mllp_in_flight.inc(delta)


def delivery_attempted(*, community: str, state: str) -> None:
    """For the community deliverer: one attempt's outcome (`delivered`, `transport`, …). `community` is
    the configured community id (EPR_COMMUNITIES), never a patient's or document's identifier."""
    made = _instruments()
    made.child(made.deliveries, community, state).inc()
