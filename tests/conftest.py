"""Shared fixtures: the gateway on SQLite and on the real PostgreSQL started by `make test`,
driven over HTTP, and real signed tokens from the development issuer."""

from __future__ import annotations

import logging
import os
import signal
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import orjson
import pytest
from sqlalchemy import create_engine, text
from starlette.testclient import TestClient

from consent.principal import Principal
from consent.ppqm import IDENTIFIER_TYPE_SYSTEM as PPQM_IDENTIFIER_TYPES
from gateway.composition import create_app
from gateway.auth.dev_issuer import mint_token
from gateway.first_start import dev_issuer_url, prepare
from gateway.samples import patient_feed
from gateway.settings import Settings
from gateway.exchanges.services import Services
from gateway.wiring import Runtime, build_runtime

SPID = "761337610411353650"
OTHER_SPID = "761337610499999991"
LOCAL_SYSTEM = "urn:oid:2.16.756.5.30.1.999.2.1"
HCP_GLN = "7601000000002"
SEARCH = "urn:oid:2.16.756.5.30.1.127.3.10.3|"
from official_examples import FIXTURES, examples_expected, is_example, require_examples  # noqa: E402  (one place decides skip or fail)


def postgres_url() -> str:
    url = os.environ.get("EPR_TEST_DATABASE_URL")
    if not url:
        pytest.fail("EPR_TEST_DATABASE_URL is not set: run the suite with `make test`, which starts PostgreSQL")
    return url


def reset_postgres(url: str) -> None:
    engine = create_engine(url)
    with engine.begin() as connection:
        connection.execute(text("DROP SCHEMA public CASCADE"))
        connection.execute(text("CREATE SCHEMA public"))
    engine.dispose()


def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'data' / 'gateway.sqlite3'}"


def fresh_postgres_url() -> str:
    url = postgres_url()
    reset_postgres(url)
    return url


@pytest.fixture(autouse=True)
def environment_as_it_was():
    """`serve` run in process exports its settings into os.environ (for its workers) and the metrics set
    PROMETHEUS_MULTIPROC_DIR: left there, a later test's Settings() would read an earlier test's
    database, data directory or metrics folder (PostgreSQL tables "missing", SQLite files gone). The
    environment is given back after each test, and the metrics to memory when their folder goes."""
    saved = dict(os.environ)
    yield
    if os.environ != saved:
        multiprocess = os.environ.get("PROMETHEUS_MULTIPROC_DIR") != saved.get("PROMETHEUS_MULTIPROC_DIR")
        os.environ.clear()
        os.environ.update(saved)
        if multiprocess:
            from prometheus_client import values

            from gateway import metrics

            values.ValueClass = values.get_value_class()
            metrics._made = None  # noqa: SLF001 - made again, in memory or in the folder the environment names


@pytest.fixture(autouse=True)
def logging_as_it_was():
    """Commands run in process (CliRunner) configure logging as they do in production: `serve` a JSON
    handler on the stderr of the moment, the others basicConfig. That stderr is a capture closed when
    the test ends, so a later test's log line (alembic's, a witness thread's) would meet a closed stream
    and print "--- Logging error ---" into whatever output that test reads. Every logger's handlers,
    level and switches are given back after each test."""
    manager = logging.Logger.manager
    loggers = [logging.getLogger(), *(l for l in manager.loggerDict.values() if isinstance(l, logging.Logger))]
    saved = [(l, l.handlers[:], l.level, l.propagate, l.disabled) for l in loggers]
    disabled = manager.disable
    yield
    for logger, handlers, level, propagate, was_disabled in saved:
        logger.handlers[:] = handlers
        logger.setLevel(level)
        logger.propagate, logger.disabled = propagate, was_disabled
    known = {id(logger) for logger, *_ in saved}
    for logger in list(manager.loggerDict.values()):  # loggers made during the test: no stream handler kept
        if isinstance(logger, logging.Logger) and id(logger) not in known:
            logger.handlers[:] = [h for h in logger.handlers if not isinstance(h, logging.StreamHandler)]
    logging.disable(disabled)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request, tmp_path) -> str:
    return sqlite_url(tmp_path) if request.param == "sqlite" else fresh_postgres_url()


@dataclass
class Tokens:
    settings: Settings

    def mint(self, **claims) -> str:
        return mint_token(data_dir=self.settings.data_dir, issuer_url=dev_issuer_url(self.settings),
                          audience=self.settings.audience, **claims)

    def hcp(self, **extra) -> str:
        return self.mint(role="HCP", gln=extra.pop("gln", HCP_GLN), name="Dr. Luc Favre", **extra)

    def patient(self, spid: str = SPID) -> str:
        return self.mint(role="PAT", spid=spid, name="Anna Muster")

    def tcu(self) -> str:
        return self.mint(role="TCU", user_id="infomed-migration", principal_gln=HCP_GLN, name="Migration")

    def headers(self, token: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {token}", "Content-Type": "application/fhir+json"}


@dataclass
class Gateway:
    client: TestClient
    runtime: Runtime  # what the composition root built: infrastructure (engine, keyring, ledger, …) and services
    tokens: Tokens
    data_dir: Path

    @property
    def services(self) -> Services:
        return self.runtime.services

    def as_hcp(self) -> dict[str, str]:
        return self.tokens.headers(self.tokens.hcp())

    def register_patient(self, spid: str = SPID, local_id: str = "L-1", family: str = "Muster",
                         given: str = "Anna", grant_hcp: str | None = "restricted", birth_date: str = "1980-05-17",
                         gender: str = "female") -> dict:
        """ITI-104 feed, onboarding (201/202/203) and, unless None, the patient's 301 grant of
        `grant_hcp` (normal or restricted) to the test HCP: the usual state of a record in use."""
        body = patient_feed(spid=spid, local_system=LOCAL_SYSTEM, local_id=local_id, family=family, given=given,
                            birth_date=birth_date, gender=gender)
        response = self.client.put(f"/fhir/Patient?identifier={LOCAL_SYSTEM}|{local_id}",
                                   content=orjson.dumps(body), headers=self.as_hcp())
        assert response.status_code in (200, 201), response.text
        self.services.policies.onboard(principal=POLICY_ADMIN, spid=spid)
        if grant_hcp:
            self.grant(spid, HCP_GLN, grant_hcp)
        return response.json()

    def grant(self, spid: str, gln: str, level: str, **period) -> str:
        """The patient grants `level` to one HCP (template 301) over PPQ-3; returns the Consent id."""
        consent = grant_consent(spid=spid, gln=gln, level=level, **period)
        response = self.client.post("/fhir/Consent", content=orjson.dumps(consent),
                                    headers=self.tokens.headers(self.tokens.patient(spid)))
        assert response.status_code == 201, response.text
        return response.json()["id"]

    def provide(self, bundle: dict, headers: dict[str, str] | None = None):
        return self.client.post("/fhir", content=orjson.dumps(bundle), headers=headers or self.as_hcp())

    def find(self, spid: str = SPID, headers: dict[str, str] | None = None, **params):
        query = {"patient.identifier": SEARCH + spid, **params}
        return self.client.get("/fhir/DocumentReference", params=query, headers=headers or self.as_hcp())


POLICY_ADMIN = Principal(role="PADM", user_id="padm-test", name="Policy administrator")


def grant_consent(*, spid: str, gln: str, level: str, start: str | None = None, end: str | None = None,
                  rule: str | None = None, template: int = 301) -> dict:
    """A CH:PPQm Consent (301 by default) naming one HCP by GLN."""
    period = {k: v for k, v in (("start", start), ("end", end)) if v}
    return {
        "resourceType": "Consent",
        "identifier": [
            {"type": {"coding": [{"system": PPQM_IDENTIFIER_TYPES, "code": "policySetId"}]},
             "value": f"urn:uuid:{uuid.uuid4()}"},
            {"type": {"coding": [{"system": PPQM_IDENTIFIER_TYPES, "code": "templateId"}]}, "value": str(template)},
        ],
        "status": "active",
        "scope": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentscope",
                              "code": "patient-privacy"}]},
        "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "INFA"}]}],
        "patient": {"identifier": {"system": "urn:oid:2.16.756.5.30.1.127.3.10.3", "value": spid}},
        "policyRule": {"coding": [{"system": "urn:ietf:rfc:3986",
                                   "code": rule or f"urn:e-health-suisse:2015:policies:access-level:{level}"}]},
        "provision": {
            **({"period": period} if period else {}),
            "actor": [{"role": {"coding": [{"system": "urn:oid:2.16.756.5.30.1.127.3.10.6", "code": "HCP"}]},
                       "reference": {"identifier": {
                           "type": {"coding": [{"system": "urn:ietf:rfc:3986", "code": "urn:gs1:gln"}]},
                           "system": "urn:oid:2.51.1.3", "value": gln}}}],
            "purpose": [{"system": "urn:oid:2.16.756.5.30.1.127.3.10.5", "code": "NORM"}],
        },
    }


def make_settings(data_dir: Path, database_url: str, **overrides) -> Settings:
    # Links come from the configured base, never from the request's Host (TestClient's is testserver).
    overrides.setdefault("public_base_url", "https://testserver/fhir")
    return Settings(data_dir=data_dir, database_url=database_url, demo_data=False, **overrides)


@contextmanager
def running_gateway(tmp_path: Path, database_url: str, **overrides):
    data_dir = tmp_path / "data"
    settings = prepare(make_settings(data_dir, database_url, **overrides)).settings
    runtime = build_runtime(settings)
    try:
        with TestClient(create_app(runtime), base_url="https://testserver") as client:
            yield Gateway(client, runtime, Tokens(settings), data_dir)
    finally:
        runtime.close()


@pytest.fixture
def gateway(tmp_path, database_url) -> Gateway:
    """The gateway on SQLite and on PostgreSQL (each test runs on both)."""
    with running_gateway(tmp_path, database_url) as running:
        yield running


@pytest.fixture
def sqlite_gateway(tmp_path) -> Gateway:
    with running_gateway(tmp_path, sqlite_url(tmp_path)) as running:
        yield running


@pytest.fixture
def pg_gateway(tmp_path) -> Gateway:
    with running_gateway(tmp_path, fresh_postgres_url()) as running:
        yield running


def pytest_report_header(config):
    if (FIXTURES / "ch-epr-fhir").is_dir():
        return f"official examples: {FIXTURES}"
    then = "their absence fails (CI or EPR_FIXTURES set)" if examples_expected() else "their tests skip"
    return f"official examples: not found at {FIXTURES}; {then} (set EPR_FIXTURES to their folder)"



# The README's rule for every test that reads the official examples, whether or not it asked
# `require_examples` first: a file missing under FIXTURES skips the test with one line (and fails it
# under CI or EPR_FIXTURES), in the test's fixtures as in its body.
@pytest.hookimpl(wrapper=True)
def pytest_runtest_setup(item):
    try:
        return (yield)
    except FileNotFoundError as error:
        _require_missing_example(error)
        raise


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item):
    try:
        return (yield)
    except FileNotFoundError as error:
        _require_missing_example(error)
        raise


def _require_missing_example(error: FileNotFoundError) -> None:
    """Skips (or fails, where the examples are expected) when `error` is about an official example."""
    if is_example(error.filename):
        path = Path(error.filename)
        require_examples(path.parent, (path.name,))


# -- every test stops every process it started --------------------------------------------------------
# A process left behind is found at the end of each test module: one of this session's process group
# that is neither pytest, nor one of its ancestors (make, the shell), nor one of its descendants, nor
# there before the session began (a `tee` beside `make test` in a pipeline) — i.e. an orphan (a migration reader whose writer was SIGKILLed, a server whose parent died). It is
# given a few seconds to end (a reader notices its parent's death within one), then killed and
# reported as an error of the module's last test. At the end of the session, descendants still
# running (a server a test never stopped) are killed and fail the session; multiprocessing's own
# helpers (its resource tracker, a forkserver) are the interpreter's and end with it.
SESSION_HELPERS = ("multiprocessing.resource_tracker", "multiprocessing.forkserver")


def _processes() -> dict[int, tuple[int, int, str]]:
    """pid → (ppid, process group, command line) of every process this user can see."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()
        found[int(entry.name)] = (int(fields[1]), int(fields[2]), command)
    return found


def _related(processes: dict[int, tuple[int, int, str]]) -> tuple[set[int], set[int]]:
    """(this process and its ancestors, its descendants)."""
    ancestors, pid = set(), os.getpid()
    while pid in processes and pid not in ancestors:
        ancestors.add(pid)
        pid = processes[pid][0]
    descendants, frontier = set(), {os.getpid()}
    while frontier:
        frontier = {p for p, (ppid, _, _) in processes.items() if ppid in frontier} - descendants
        descendants |= frontier
    return ancestors, descendants


def _group_members(processes: dict[int, tuple[int, int, str]]) -> set[int]:
    group = os.getpgid(0)
    return {pid for pid, (_, pgrp, _) in processes.items() if pgrp == group}


GROUP_AT_START = _group_members(_processes())


def _left_behind() -> dict[int, str]:
    processes = _processes()
    ancestors, descendants = _related(processes)
    return {pid: processes[pid][2] for pid in _group_members(processes) - ancestors - descendants - GROUP_AT_START
            if processes[pid][2]}


def _kill(pids) -> None:
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


@pytest.hookimpl(wrapper=True)
def pytest_runtest_teardown(item, nextitem):
    result = yield
    if nextitem is None or nextitem.module is not item.module:
        deadline = time.monotonic() + 5
        while (left := _left_behind()) and time.monotonic() < deadline:
            time.sleep(0.2)
        if left:
            _kill(left)
            pytest.fail(f"{item.module.__name__} left processes behind (killed now): "
                        + "; ".join(f"{pid} {command[:120]}" for pid, command in sorted(left.items())), pytrace=False)
    return result


def pytest_sessionfinish(session, exitstatus):
    processes = _processes()
    _, descendants = _related(processes)
    running = {pid: processes[pid][2] for pid in descendants
               if pid in processes and not any(helper in processes[pid][2] for helper in SESSION_HELPERS)}
    if running:
        _kill(running)
        print("\nprocesses the tests started and never stopped (killed now): "
              + "; ".join(f"{pid} {command[:120]}" for pid, command in sorted(running.items())))
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
