"""The metrics listener: Prometheus text format on its own address (`EPR_METRICS_ADDRESS`), never on the
FHIR face's port (the metrics are for the operator's scraper, not for the network the clients reach).

It runs in the `epr-gateway serve` process, the parent of the workers. The workers record into files
(`prometheus_client`'s multiprocess mode, `gateway/metrics.py`) under a directory of this serving
process: `<data dir>/metrics/<pid of serve>`, emptied at start; a directory left by a serving process
that is gone is removed (two nodes may share a data directory, each has its own). A scrape merges every
worker's files. What the library asks for dead workers (`mark_process_dead`: their live gauges, e.g.
connections in use, no longer count) is done at each scrape for every worker whose process is gone, so
a worker killed and restarted by the supervisor is handled too; its counters stay in the sums, as they
must (counters do not go back).

Beside the workers' values, the state a scrape reads from the store, for all processes at once: HL7 v2
messages held, the migration journal per outcome, the witness's lag behind the ledger's signed head,
the keys the live workers hold (`keys add` … `retire`), and any source a part adds (`sources`: the
community outbox's counts).
"""

from __future__ import annotations

import glob
import logging
import os
import re
import shutil
from datetime import UTC, datetime
from collections.abc import Callable, Iterable
from pathlib import Path

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead

from adapters.cara.identifier_syntax import ascii_int
from gateway import metrics
from gateway.settings import Settings

log = logging.getLogger("epr.gateway.metrics")
_LIVE_FILE = re.compile(r"gauge_live\w+?_([0-9]+)\.db")  # fullmatch

Source = Callable[[], Iterable[Metric]]


class MetricsAddressInvalid(ValueError):
    """EPR_METRICS_ADDRESS is not host:port, or cannot be listened on when set explicitly."""


def parse_address(address: str) -> tuple[str, int]:
    host, _, port_text = address.rpartition(":")
    port = ascii_int(port_text)  # ASCII digits only: `int` would take "٩٤٦٤" or " 9464"
    if not host or port is None or not 0 < port < 65536:
        raise MetricsAddressInvalid(f"EPR_METRICS_ADDRESS={address!r}: host:port expected (or 'off')")
    return host.strip("[]"), port


def metrics_directory(data_dir: Path, pid: int | None = None) -> Path:
    return data_dir / "metrics" / str(pid or os.getpid())


def _alive(pid: int) -> bool:
    """A zombie (exited, not yet reaped by its parent) is dead: its files are final."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False
    except OSError:  # no /proc: ask the kernel
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:  # another user's process: alive
            return True
        return True


def prepare_directory(data_dir: Path) -> Path:
    """This serving process's directory, empty; the directories of serving processes that are gone removed."""
    parent = data_dir.resolve() / "metrics"
    parent.mkdir(parents=True, exist_ok=True)
    for other in parent.iterdir():
        pid = ascii_int(other.name)
        if other.is_dir() and pid is not None and pid != os.getpid() and not _alive(pid):
            shutil.rmtree(other, ignore_errors=True)
    mine = metrics_directory(data_dir.resolve())
    shutil.rmtree(mine, ignore_errors=True)
    mine.mkdir()
    return mine


class WorkersCollector:
    """Every worker's files merged; the live gauges of workers that are gone dropped first."""

    def __init__(self, directory: Path):
        self.directory = directory

    def collect(self) -> Iterable[Metric]:
        for path in glob.glob(str(self.directory / "gauge_live*.db")):
            found = _LIVE_FILE.fullmatch(os.path.basename(path))
            if found and not _alive(int(found.group(1))):
                mark_process_dead(int(found.group(1)), str(self.directory))
        return MultiProcessCollector.merge(glob.glob(str(self.directory / "*.db")), accumulate=True)


class StateCollector:
    """Gauges read at each scrape from the sources; a source that fails is reported down, the others kept."""

    def __init__(self, sources: dict[str, Source]):
        self.sources = sources

    def collect(self) -> Iterable[Metric]:
        up = GaugeMetricFamily("epr_metrics_source_up", "Whether a state source could be read at this scrape",
                               labels=["source"])
        for name, source in self.sources.items():
            try:
                families = list(source())
            except Exception:  # noqa: BLE001 - the store may be down: the scrape still answers
                log.warning("metrics source %s could not be read", name, exc_info=True)
                up.add_metric([name], 0)
                continue
            up.add_metric([name], 1)
            yield from families
        yield up


class MetricsListener:
    def __init__(self, *, directory: Path, host: str, port: int, sources: dict[str, Source]):
        self.directory, self.host, self.port = directory, host, port
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(WorkersCollector(directory))
        self.registry.register(StateCollector(sources))
        self._server = self._thread = None

    def start(self) -> None:
        self._server, self._thread = start_http_server(self.port, addr=self.host, registry=self.registry)
        self.port = self._server.server_port

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        shutil.rmtree(self.directory, ignore_errors=True)


def start_metrics(settings: Settings, sources: dict[str, Source]) -> MetricsListener | None:
    """Called by `serve` before any worker starts (and before anything is recorded in this process). None
    when off. A default address already taken is said and skipped (a second development gateway on this
    machine); an address set explicitly that cannot be listened on refuses the start."""
    address = settings.metrics_listen
    if address is None:
        return None
    host, port = parse_address(address)
    directory = prepare_directory(settings.data_dir)
    listener = MetricsListener(directory=directory, host=host, port=port, sources=sources)
    try:
        listener.start()
    except OSError as error:
        shutil.rmtree(directory, ignore_errors=True)
        if settings.metrics_address is None:
            log.warning("metrics NOT served: %s is taken (%s); set EPR_METRICS_ADDRESS", address, error.strerror)
            return None
        raise MetricsAddressInvalid(f"EPR_METRICS_ADDRESS={address}: cannot listen ({error.strerror or error})") \
            from None
    metrics.enable_multiprocess(directory)
    return listener


def store_sources(settings: Settings) -> dict[str, Source]:
    """The state read from the store at each scrape (one engine for the listener, opened on first use)."""
    from adapters.cara.crypto import Keyring
    from adapters.cara.store.database import make_engine
    from adapters.cara.store.message_inbox import DatabaseMessageInbox
    from audit.ledger import read_head
    from audit.witness import last_witnessed
    from gateway.migration.journal import Journal

    engine = make_engine(settings.resolved_database_url)
    keyring = Keyring.load(settings.keyring_path)

    def held_messages() -> Iterable[Metric]:
        held = DatabaseMessageInbox(engine=engine, keyring=keyring).held_count()
        yield GaugeMetricFamily("epr_mllp_held_messages", "HL7 v2 messages held until their patient is ready",
                                value=held)

    def migration() -> Iterable[Metric]:
        family = GaugeMetricFamily("epr_migration_documents", "Source documents in the migration journal, by "
                                   "outcome", labels=["outcome"])
        for outcome, count in sorted(Journal(engine=engine, keyring=keyring).outcome_counts().items()):
            family.add_metric([outcome], count)
        yield family

    def witness() -> Iterable[Metric]:
        head = read_head(engine)
        path = settings.audit_witness_path
        witnessed = last_witnessed(path) if path.exists() else None
        records = (head.seq if head else 0) - (witnessed.seq if witnessed else 0)
        if head is None:
            seconds = 0.0
        elif witnessed is None:  # nothing witnessed yet: the head has waited since it was signed
            seconds = (datetime.now(UTC).replace(tzinfo=None) - head.signed_at).total_seconds()
        else:
            seconds = (head.signed_at - witnessed.signed_at).total_seconds()
        yield GaugeMetricFamily("epr_audit_witness_lag_records", "Ledger records signed but not yet in the "
                                "witness file", value=max(records, 0))
        yield GaugeMetricFamily("epr_audit_witness_lag_seconds", "Time from the witness file's last head to the "
                                "ledger's signed head", value=max(seconds, 0.0))

    def key_holders() -> Iterable[Metric]:
        from adapters.cara.store.key_holders import KeyHolders

        live = KeyHolders(engine=engine).live(stale_after=3 * settings.key_heartbeat_seconds)
        family = GaugeMetricFamily("epr_key_holders", "Live gateway processes holding a key-encryption key, by key "
                                   "id and whether they wrap new data keys under it", labels=["key", "use"])
        for key_id in sorted({k for holder in live for k in holder.key_ids}):
            family.add_metric([key_id, "active"], sum(holder.active == key_id for holder in live))
            family.add_metric([key_id, "held"], sum(key_id in holder.key_ids for holder in live))
        yield family

    return {"mllp-held": held_messages, "migration": migration, "witness": witness, "keys": key_holders}
