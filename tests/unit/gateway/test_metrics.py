"""The metrics in one process (`gateway/metrics.py`, `gateway/instrumentation.py`): exchanges are counted
from the audit ledger when the transaction holding their records commits, not when they are appended;
label values stay within known sets whatever a client or a sender sends."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from adapters.cara.store.database import make_engine, migrate
from audit.events import AuditRecord, DocumentRef
from audit.ledger import DatabaseAuditLedger, prepare
from audit.signing import key_id_of
from conftest import SPID, fresh_postgres_url
from consent.principal import Principal
from gateway import metrics
from gateway.instrumentation import instrument

HCP = Principal(role="HCP", user_id="7601000000002", user_id_qualifier="urn:gs1:gln", name="Dr. Luc Favre")


def value(name: str, **labels) -> float:
    return metrics.LOCAL.get_sample_value(name, labels) or 0.0


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def ledger(request, tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 'm.sqlite3'}" if request.param == "sqlite" else fresh_postgres_url())
    migrate(engine)
    key = Ed25519PrivateKey.generate()
    ledger = DatabaseAuditLedger(engine=engine, signing_key=key, key_id=key_id_of(key.public_key()))
    instrument(engine, ledger)
    yield ledger
    engine.dispose()


def record(transaction: str, outcome: str = "0", documents: int = 0) -> AuditRecord:
    refs = tuple(DocumentRef(unique_id=f"urn:oid:2.25.{n}", repository_unique_id="2.16.756.5.30.1.999.1",
                             home_community_id="urn:oid:2.16.756.5.30.1.999.1", type_code="419891008",
                             title="Letter") for n in range(documents))
    return AuditRecord(transaction=transaction, principal=HCP, source_site="2.16.756.5.30.1.999.1.1",
                       outcome=outcome, patient_spid=SPID, documents=refs)


def prepared_exchange(transaction: str, outcome: str = "0", documents: int = 0):
    from audit.events import split_per_document

    return [prepare(one, "key", first_of_exchange=index == 0)
            for index, one in enumerate(split_per_document(record(transaction, outcome, documents)))]


def test_an_exchange_is_counted_when_its_transaction_commits(ledger):
    before = value("epr_exchanges_total", transaction="ITI-65", outcome="success")
    batches = value("epr_audit_batch_records_count")
    with ledger._engine.begin() as connection:
        ledger.append_many(connection, prepared_exchange("ITI-65", documents=3))
        # appended, not committed: nothing counted yet
        assert value("epr_exchanges_total", transaction="ITI-65", outcome="success") == before

    assert value("epr_exchanges_total", transaction="ITI-65", outcome="success") == before + 1  # one exchange
    assert value("epr_audit_batch_records_count") == batches + 1
    assert value("epr_audit_batch_records_bucket", le="5.0") - value("epr_audit_batch_records_bucket", le="2.0") >= 1


def test_an_exchange_whose_transaction_rolls_back_is_not_counted(ledger):
    before = value("epr_exchanges_total", transaction="CH-MHD-1", outcome="success")
    with pytest.raises(RuntimeError):
        with ledger._engine.begin() as connection:
            ledger.append_many(connection, prepared_exchange("CH-MHD-1"))
            raise RuntimeError("the change failed after its record was appended")
    # the next commit on the same pooled connection does not count it either
    with ledger._engine.begin() as connection:
        ledger.append_many(connection, prepared_exchange("ITI-67"))

    assert value("epr_exchanges_total", transaction="CH-MHD-1", outcome="success") == before


def test_refusals_are_counted_by_their_outcome(ledger):
    before = value("epr_exchanges_total", transaction="ITI-68", outcome="minor-failure")
    with ledger._engine.begin() as connection:
        ledger.append_many(connection, prepared_exchange("ITI-68", outcome="4") + prepared_exchange("ITI-68", "4"))

    assert value("epr_exchanges_total", transaction="ITI-68", outcome="minor-failure") == before + 2


@pytest.mark.parametrize(("transaction", "label"), [
    ("ITI-65", "ITI-65"), ("PPQ-4", "PPQ-4"), ("HL7v2 MDM^T02", "HL7v2 MDM^T02"), ("HL7v2 ADT^A40", "HL7v2 ADT^A40"),
    ("HL7v2 ZZZ^Q99", "HL7v2 other"), ("HL7v2 MDM^T02\x00", "HL7v2 other"), ("HL7v2", "HL7v2 other"),
    ("ITI-65; DROP", "other"), ("761337610411353650", "other"),
])
def test_transaction_labels_are_a_known_set(transaction, label):
    assert metrics.transaction_label(transaction) == label


def test_a_method_a_client_invents_is_one_label():
    metrics.request_served(route="/fhir/metadata", method="BREW", status=405, seconds=0.001)
    metrics.request_served(route="/fhir/metadata", method="X" * 300, status=405, seconds=0.001)

    assert value("epr_http_requests_total", route="/fhir/metadata", method="other", status="405") >= 2
    samples = {s.labels.get("method") for family in metrics.LOCAL.collect() for s in family.samples}
    assert "BREW" not in samples and "X" * 300 not in samples


@pytest.mark.parametrize(("env", "address", "listen"), [
    ("development", None, "127.0.0.1:9464"), ("production", None, None), ("development", "off", None),
    ("production", "10.0.0.5:9464", "10.0.0.5:9464"), ("development", " OFF ", None),
])
def test_where_the_metrics_listen(env, address, listen, tmp_path):
    from gateway.settings import Settings

    assert Settings(env=env, data_dir=tmp_path, metrics_address=address).metrics_listen == listen


@pytest.mark.parametrize("address", ["9464", "localhost:", ":9464x", "host:70000", "host:\u0669\u0664\u0666\u0664",
                                     "host: 9464", "host:9464\n"])
def test_a_metrics_address_that_is_not_host_port_is_refused(address):
    from gateway.metrics_listener import MetricsAddressInvalid, parse_address

    with pytest.raises(MetricsAddressInvalid, match="host:port expected"):
        parse_address(address)
