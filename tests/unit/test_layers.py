"""The house's floors (design.md, "Growing the house"), read from the source so that a new module is
held to them as well:

    root (wiring, composition, cli, asgi entry, first start, demo)
      → faces (http, mllp, portal, migration)
        → use-cases (gateway/exchanges)
          → the gateway's support (auth, settings, pki, log_format)
            → audit → consent → adapters/cara   (adapters/infomed and other adapters → adapters/cara)

An import goes down only; across units of one floor only where `SIDEWAYS` says why. There is no
import circle anywhere. A face reaches the record through the use-cases only: it imports no store,
and it writes no attribute chain that reaches a store through a use-case (`services.exchange.patients`).
No product module is longer than `MAX_LINES`.

Which imports count: every import statement of a module, at module level, under `TYPE_CHECKING`, or
inside a function. A type named in an annotation is a module its reader must know, and a deferred
import is still a dependency: the only reason to hide one under `TYPE_CHECKING` or in a function is
a circle or an upward arrow, which is what these checks are for. (Deferring an import for start-up
cost stays possible: it is checked like any other.)

Each check is also fed a synthetic violation, so a check that cannot fail is seen."""

from __future__ import annotations

import ast
import dataclasses
from pathlib import Path

import pytest
from sqlalchemy import Engine

from source_tree import (ROOT, attribute_chains, chain_of, circles, contains, import_graph, imports_of,
                         product_modules)

MODULES = product_modules()
GRAPH = import_graph(MODULES)

ROOT_MODULES = frozenset({"gateway", "gateway.cli", "gateway.migration_cli", "gateway.held_cli", "gateway.wiring", "gateway.composition",
                          "gateway.asgi", "gateway.first_start", "gateway.demo", "gateway.samples",
                          "gateway.running_note", "gateway.delivery_setup", "gateway.delivery_cli",
                          "gateway.metrics_listener", "gateway.instrumentation", "gateway.readiness", "gateway.keys_cli",
                          "gateway.backup", "gateway.backup_cli", "gateway.restore_check"})
FACES = ("http", "mllp", "portal", "hcp", "migration", "pages", "delivery")
SUPPORT = ("gateway.auth", "gateway.settings", "gateway.pki", "gateway.log_format", "gateway.metrics",
           "gateway.redis_client")
# (importing unit, imported unit) on one floor, and why.
SIDEWAYS = {
    ("face:portal", "face:http"): "the patient's page is served by the FHIR face's app: it runs use-cases through "
                                  "`routes.common.run_use_case` and answers with the statuses of the one error table",
    ("face:portal", "face:pages"): "the patient's page lives in the house the web pages share (sessions, CSRF, "
                                   "headers, languages, layout)",
    ("face:hcp", "face:pages"): "the professionals' page lives in the house the web pages share",
    ("face:hcp", "face:http"): "the professionals' page is served by the FHIR face's app: it runs use-cases through "
                               "`routes.common.run_use_case` and serves documents by ITI-68's header rule",
    ("face:pages", "face:http"): "the web pages are served by the FHIR face's app: their error pages carry the "
                                 "statuses of its one error table, refused forms count with its refusals",
}
# Circles that another branch removes; each must still exist (else it is taken off this list).
KNOWN_CIRCLES: dict = {}
STORES = ("adapters.cara.store", "consent.store", "audit.ledger")
# Where a face imports a store module on purpose, and why (anything else fails).
STORE_ALLOWED = {
    "gateway.migration.schema": "the migration journal's own tables join the store's schema (Alembic)",
}
MAX_LINES = 450
# Modules another branch splits (issue 23 item 2); each must still be over the limit.
KNOWN_OVERSIZE: dict = {}


def unit_of(module: str) -> str:
    """The unit a module belongs to: imports inside one unit are free (save circles)."""
    parts = module.split(".")
    if module in ROOT_MODULES:
        return "root"
    if parts[0] == "gateway" and len(parts) > 1 and parts[1] in FACES:
        return f"face:{parts[1]}"
    if module.startswith("gateway.exchanges"):
        return "exchanges"
    if any(module == s or module.startswith(s + ".") for s in SUPPORT):
        return "support"
    if parts[0] == "adapters":
        return ".".join(parts[:2])
    if parts[0] in ("consent", "audit"):
        return parts[0]
    raise LookupError(f"{module} has no floor: add it to ROOT_MODULES, a face, exchanges/ or SUPPORT "
                      "(tests/unit/test_layers.py) — where it belongs is a decision to write down")


def floor_of(unit: str) -> int:
    # adapters/syslog.py: RFC 5424/5425 pieces (no record, no gateway) under both the ledger's SIEM shipping
    # (audit) and the community's ATNA sender (adapters/community).
    return {"root": 6, "exchanges": 4, "support": 3, "audit": 2, "consent": 1, "adapters.cara": 0,
            "adapters.syslog": 0}.get(unit, 5 if unit.startswith("face:") else 1)  # other adapters sit on cara


def arrow_problem(source: str, target: str) -> str | None:
    """Why `source` may not import `target`, or None."""
    here, there = unit_of(source), unit_of(target)
    if here == there or floor_of(there) < floor_of(here) or (here, there) in SIDEWAYS:
        return None
    return f"{source} ({here}) imports {target} ({there}): " + (
        "an arrow upward" if floor_of(there) > floor_of(here) else "sideways between units of one floor")


def test_every_product_module_has_a_floor():
    assert [m for m in MODULES if _unplaced(m)] == []


def _unplaced(module: str) -> bool:
    try:
        unit_of(module)
    except LookupError:
        return True
    return False


def test_no_import_goes_up_or_sideways():
    problems = [f"{arrow_problem(i.source, i.target)} (line {i.line})" for i in GRAPH
                if arrow_problem(i.source, i.target)]
    assert problems == []


@pytest.mark.parametrize(("source", "target"), [
    ("gateway.http.app", "gateway.portal"),  # a face installing another face
    ("gateway.http.app", "gateway.wiring"),  # a face reaching for the root
    ("gateway.exchanges.documents", "gateway.mllp.listener"),  # a use-case knowing a face
    ("gateway.auth.iua", "gateway.exchanges.access"),  # support knowing the use-cases
    ("consent.pdp", "audit.events"),  # consent below audit
    ("adapters.cara.model", "adapters.infomed.xdm.mapping"),  # the record knowing a reader
    ("adapters.infomed.xdm.mapping", "consent.pdp"),  # two units of the lowest floors
    ("gateway.mllp.listener", "gateway.migration.job"),  # two faces
])
def test_the_floor_check_catches_planted_arrows(source, target):
    assert source in arrow_problem(source, target)


@pytest.mark.parametrize(("source", "target"), [
    ("gateway.wiring", "gateway.portal.directory"),
    ("gateway.portal.pages", "gateway.http.outcomes"),
    ("gateway.exchanges.access", "gateway.auth.errors"),
    ("audit.events", "consent.principal"),
    ("adapters.infomed.xdm.mapping", "adapters.cara.model"),
])
def test_the_floor_check_lets_downward_arrows_pass(source, target):
    assert arrow_problem(source, target) is None


def test_a_planted_module_without_a_floor_is_refused():
    with pytest.raises(LookupError, match="no floor"):
        unit_of("gateway.newcomer")


def test_the_sideways_allowances_are_used():
    used = {(unit_of(i.source), unit_of(i.target)) for i in GRAPH}
    assert set(SIDEWAYS) <= used


def test_no_import_circle_in_the_product():
    found = set(circles((i.source, i.target) for i in GRAPH))
    assert found - set(KNOWN_CIRCLES) == set()


def test_the_known_circles_still_exist():
    """A circle another branch removed is taken off the list (it would hide a new one)."""
    found = set(circles((i.source, i.target) for i in GRAPH))
    assert set(KNOWN_CIRCLES) <= found


def test_the_circle_check_sees_circles_through_type_checking_and_function_imports():
    planted = {
        "pkg.a": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg.b import B\n",
        "pkg.b": "def f():\n    from pkg.c import C\n",
        "pkg.c": "from . import a\n",
        "pkg.d": "import pkg.a\n",
    }
    edges = [(i.source, i.target) for name, text in planted.items() for i in imports_of(name, text, planted)]
    assert ("pkg.c", "pkg.a") in edges  # the relative import resolved
    assert circles(edges) == [frozenset({"pkg.a", "pkg.b", "pkg.c"})]


# -- faces reach the record through the use-cases only ------------------------------------------
def face_modules() -> list[str]:
    return sorted(m for m in MODULES if unit_of(m).startswith("face:"))


@pytest.mark.parametrize("module", face_modules())
def test_a_face_imports_no_store(module):
    stores = sorted(i.target for i in GRAPH if i.source == module and i.target.startswith(STORES))
    assert stores == [] or module in STORE_ALLOWED, f"{module} imports the store directly: {stores}"


def test_the_store_exceptions_still_need_their_exception():
    for module in STORE_ALLOWED:
        assert any(i.source == module and i.target.startswith(STORES) for i in GRAPH), module


def is_store(value) -> bool:
    module = type(value).__module__
    return isinstance(value, Engine) or any(module == s or module.startswith(s + ".") for s in STORES)


def store_paths(services, depth: int = 3) -> set[tuple[str, ...]]:
    """Every attribute path from `Services` to a store object, through use-case objects only: e.g.
    ('exchange', 'patients') when the document exchange keeps the MPI as `patients`."""
    found: set[tuple[str, ...]] = set()

    def walk(value, path: tuple[str, ...]) -> None:
        if is_store(value):
            found.add(path)
            return
        if len(path) > depth or not type(value).__module__.startswith("gateway.exchanges"):
            return
        for name, attribute in vars(value).items():
            walk(attribute, path + (name,))

    for field in dataclasses.fields(services):
        walk(getattr(services, field.name), (field.name,))
    return found


def reaches_store(source: str, paths: set[tuple[str, ...]], use_cases: dict[str, str]) -> list[str]:
    """The attribute chains of `source` that follow a store path: anywhere inside a chain
    (`portal(request).services.exchange.patients`, `self.exchange.patients`), or from a local name the
    module binds to a use-case (`exchange = services.exchange`, a parameter `exchange: Exchange`) — a
    chain that merely starts with a field's name (`metadata.documents` of an XDM package) is not one."""
    bound = names_bound_to_use_cases(source, use_cases)
    found = []
    for line, chain in attribute_chains(source):
        if chain[0] in bound:
            chain = (bound[chain[0]],) + chain[1:]
        elif chain[0] in use_cases:
            chain = ("?",) + chain[1:]  # a name merely spelled like a field: only what follows may match
        if any(contains(chain, path) for path in paths):
            found.append(f"line {line}: {'.'.join(chain)}")
    return found


def names_bound_to_use_cases(source: str, use_cases: dict[str, str]) -> dict[str, str]:
    """Local name → the Services field it holds. `use_cases`: field name → its class's name."""
    bound = {}
    by_class = {kind: name for name, kind in use_cases.items()}
    for node in ast.walk(ast.parse(source)):
        if (isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name)
                and isinstance(node.value, ast.Attribute) and chain_of(node.value)[-1] in use_cases):
            bound[node.targets[0].id] = chain_of(node.value)[-1]
        elif isinstance(node, ast.arg) and node.annotation is not None:
            kind = ast.unparse(node.annotation)
            if kind in by_class:
                bound[node.arg] = by_class[kind]
    return bound


def use_case_fields(services) -> dict[str, str]:
    return {f.name: type(getattr(services, f.name)).__name__ for f in dataclasses.fields(services)}


@pytest.fixture(scope="module")
def runtime(tmp_path_factory):
    from conftest import make_settings, sqlite_url
    from gateway.first_start import prepare
    from gateway.wiring import build_runtime

    tmp = tmp_path_factory.mktemp("layers")
    built = build_runtime(prepare(make_settings(tmp / "data", sqlite_url(tmp))).settings)
    yield built
    built.close()


def test_services_hold_use_cases_only(runtime):
    kinds = {f.name: type(getattr(runtime.services, f.name)) for f in dataclasses.fields(runtime.services)}
    assert {name: kind.__module__ for name, kind in kinds.items()
            if not kind.__module__.startswith("gateway.exchanges") or is_store(getattr(runtime.services, name))} == {}


def test_the_use_cases_keep_stores_the_check_knows(runtime):
    """The attribute check below is only as good as these paths: they must include the stores the
    document exchange really keeps (else the walk found nothing and the check would pass vacuously)."""
    paths = store_paths(runtime.services)
    assert {("exchange", "patients"), ("exchange", "documents"), ("exchange", "access", "store")} <= paths


@pytest.mark.parametrize("module", face_modules())
def test_a_face_reaches_no_store_through_a_use_case(module, runtime):
    found = reaches_store(MODULES[module].read_text(), store_paths(runtime.services), use_case_fields(runtime.services))
    assert found == []


def test_the_attribute_check_catches_planted_reaches(runtime):
    planted = ("def feed(services, spid, request, identities: IdentityExchange):\n"
               "    pid = services.exchange.patients.pid_for_spid(spid)\n"
               "    exchange = services.exchange\n"
               "    exchange.documents.search(None)\n"
               "    portal(request).services.exchange.access.store.policies_for(pid)\n"
               "    services(request).exchange.find(principal=None)\n"
               "    self.exchange.patients.get(pid)\n"
               "    identities.patients.get(pid)\n"
               "    metadata = read_xdm()\n"
               "    metadata.documents.append(None)\n")
    found = reaches_store(planted, store_paths(runtime.services), use_case_fields(runtime.services))
    assert [f.split(":")[0] for f in found] == ["line 2", "line 4", "line 5", "line 7", "line 8"]


# -- module size ---------------------------------------------------------------------------------
def oversize(paths, *, base: Path = ROOT) -> dict[str, int]:
    counts = {str(p.relative_to(base)): len(p.read_text().splitlines()) for p in paths}
    return {name: n for name, n in counts.items() if n > MAX_LINES}


def test_no_product_module_is_over_the_limit():
    assert set(oversize(MODULES.values())) - set(KNOWN_OVERSIZE) == set()


def test_the_known_oversize_modules_are_still_over():
    assert set(KNOWN_OVERSIZE) <= set(oversize(MODULES.values()))


def test_the_size_check_catches_a_planted_long_module(tmp_path: Path):
    (tmp_path / "long.py").write_text("x = 1\n" * (MAX_LINES + 1))
    (tmp_path / "short.py").write_text("x = 1\n" * MAX_LINES)
    assert oversize([tmp_path / "long.py", tmp_path / "short.py"], base=tmp_path) == {"long.py": MAX_LINES + 1}
