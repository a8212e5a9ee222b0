"""What bench_scale.py's load processes run: the exchanges of a record in use, one kind per connection
(ITI-67 searches, ITI-68 reads, ITI-65 provides, PPQ-3/5 consent changes, ITI-81 trail reads, HL7 v2
MDM^T02 over MLLP, and the bare baseline's GET and POST), spread over the nodes of one configuration;
and, in the mixed window, the probes that check the invariants while the load runs:

- **consent**: the probe patient's grant to the HCP is revoked through one node, then every probe
  connection (several per worker, on every node) reads the probe document at once: each 200 is a
  stale decision. The grant is given again through another node and read again (a refusal then is a
  late grant: it fails closed, counted apart). Then again, until the window ends.
- **paging**: ITI-67 pages of the provide patient (the one the ITI-65 connections provide for, so
  documents arrive while it pages), each page from the next node: no document twice (repeat), and
  every document acknowledged before the first page among the pages (skip).
- **stored once**: the uniqueIds of every ITI-65 answered 200 and every HL7 v2 message answered AA
  are returned, and bench_scale counts their rows in the database; some messages are sent twice.

Only requests sent and answered inside the measured window count for the figures; the probes run
from the first second of the window to its end. Run as `run(spec)` in a spawned process.
"""

from __future__ import annotations

import asyncio
import base64
import random
import time
import uuid
from typing import Any
from urllib.parse import quote, urlsplit

import orjson

from load_client import (REQUEST_TIMEOUT_S, ProvideBodies, RawConnection, client_ssl_context, http_request,
                         make_pdf)

SPID_SYSTEM = "urn:oid:2.16.756.5.30.1.127.3.10.3"
SNOMED = "http://snomed.info/sct"
START, END = b"\x0b", b"\x1c\x0d"
MAX_LOOPS = 10_000_000  # a bound on every loop besides the clock


def run(spec: dict[str, Any]) -> dict[str, Any]:
    try:
        import uvloop
    except ImportError:
        return asyncio.run(Load(spec).main())
    return uvloop.run(Load(spec).main())


def gln(serial: int) -> str:
    """A GLN with its check digit (GS1 mod 10) in the 76… range: the grantees of the consent changes."""
    digits = f"760999{serial % 10**6:06d}"
    total = sum(int(d) * (3 if i % 2 else 1) for i, d in enumerate(reversed(digits), 1))
    return digits + str((10 - total % 10) % 10)


def consent_301(spid: str, grantee: str) -> bytes:
    """A CH:PPQm Consent of template 301: the patient grants one HCP (by GLN) the normal level."""
    from consent.policies import NORMAL, Policy
    from consent.ppqm import consent_from_policy

    return orjson.dumps(consent_from_policy(Policy(policy_set_id=f"urn:uuid:{uuid.uuid4()}", template=301,
                                                   patient_spid=spid, rule=NORMAL, subject_id=grantee)))


def mdm_t02(control_id: str, unique_id: str, pdf: bytes, *, local_system_oid: str, local_id: str) -> bytes:
    segments = [
        f"MSH|^~\\&|KIS|DEMO-HOSPITAL|EPR|EPR|20261120100000+0100||MDM^T02^MDM_T02|{control_id}|P|2.5|||||CHE|"
        "UNICODE UTF-8",
        "EVN|T02|20261120100000+0100",
        f"PID|1||{local_id}^^^Demo&{local_system_oid}&ISO^PI||Demo^Valérie||19700412|F",
        "PV1|1|I",
        f"TXA|1|DS|AP|20261120093000+0100|||||7601000000002^Favre^Luc|||{unique_id}|||||AU||AV||||||Lettre de sortie",
        f"OBX|1|ED|DOC^Document||^application^pdf^Base64^{base64.b64encode(pdf).decode()}||||||F",
    ]
    return ("\r".join(segments) + "\r").encode("utf-8")


class Tally:
    """One kind's figures: latencies of the answers that count, errors, 5xx answers, and what they were."""

    def __init__(self):
        self.latencies: list[float] = []
        self.errors: list[str] = []
        self.server_errors = 0

    def add(self, counted: bool, ok: bool, seconds: float, what: str, status) -> None:
        if isinstance(status, int) and status >= 500:
            self.server_errors += 1
        if not counted:
            return
        if ok:
            self.latencies.append(seconds)
        elif len(self.errors) < 1000:
            self.errors.append(what)

    def figures(self) -> dict[str, Any]:
        return {"latencies": self.latencies, "errors": self.errors, "server_errors": self.server_errors}


class Load:
    def __init__(self, spec: dict[str, Any]):
        self.spec = spec
        offset = time.monotonic() - time.time()
        self.begin, self.start, self.end = (spec[k] + offset for k in ("t_begin", "t_start", "t_end"))
        self.ssl = client_ssl_context(spec["ca"])
        self.nodes = spec["nodes"]
        self.rnd = random.Random(spec["seed"])
        self.tallies: dict[str, Tally] = {}
        self.provided: list[tuple[str, str]] = []  # (uniqueId, DocumentReference id) answered 200
        self.acknowledged: list[str] = []  # uniqueIds of the HL7 v2 messages answered AA
        self.codes: dict[str, int] = {}
        self.invariants: dict[str, Any] = {"stale_decisions": 0, "late_grants": 0, "decisions_checked": 0,
                                           "revocations": 0, "pages_walked": 0, "repeats": 0, "skips": 0,
                                           "paged_documents": 0, "probe_failures": []}

    async def main(self) -> dict[str, Any]:
        tasks, number = [], 0
        for actor in self.spec["actors"]:
            for _ in range(actor["connections"]):
                node = self.nodes[number % len(self.nodes)]
                tasks.append(self._actor(actor["kind"], node, number))
                number += 1
        probes = self.spec.get("probes") or {}
        if probes.get("consent"):
            tasks.append(self._consent_probe(probes["consent"]))
        if probes.get("paging"):
            tasks.append(self._paging_probe(probes["paging"]))
        await asyncio.sleep(max(0.0, self.begin - time.monotonic()))
        cpu = time.process_time()
        await asyncio.gather(*tasks)
        return {"by_kind": {k: t.figures() for k, t in self.tallies.items()}, "provided": self.provided,
                "acknowledged": self.acknowledged, "codes": self.codes, "invariants": self.invariants,
                "cpu_s": time.process_time() - cpu}

    # -- the exchanges ------------------------------------------------------------------------------
    def _headers(self, token: str, accept: str = "application/fhir+json", body: bool = False) -> str:
        return (f"User-Agent: epr-bench-scale\r\nAuthorization: Bearer {token}\r\nAccept: {accept}\r\n"
                + ("Content-Type: application/fhir+json\r\n" if body else ""))

    async def _http(self, raw: RawConnection, host: str, method: str, path: str, headers: str,
                    body: bytes = b"") -> tuple[int | str, bytes]:
        request = http_request(method, path, f"Host: {host}\r\n{headers}", body)
        try:
            return await asyncio.wait_for(raw.request(request), REQUEST_TIMEOUT_S)
        except Exception as error:  # noqa: BLE001 - a connection or timeout error is a failed request
            return type(error).__name__, b""

    def _tally(self, kind: str) -> Tally:
        return self.tallies.setdefault(kind, Tally())

    async def _actor(self, kind: str, node: dict[str, Any], number: int) -> None:
        if kind == "mllp":
            return await self._mllp(node, number)
        url = urlsplit(node["base"])
        raw = RawConnection(url.hostname, url.port, self.ssl)
        spec, tokens, tally = self.spec, self.spec["tokens"], self._tally(kind)
        bodies = ProvideBodies(**{**spec["provide"], "run": spec["provide"]["run"] * 1000 + number},
                               first_variant=8 * number) if kind in ("provide", "baseline_provide") else None
        await asyncio.sleep(max(0.0, self.begin - time.monotonic()))
        try:
            for loop in range(MAX_LOOPS):
                sent = time.monotonic()
                if sent >= self.end:
                    return
                patient = spec["patients"][(number + loop) % len(spec["patients"])]
                expected = 200
                if kind in ("search", "baseline"):
                    path = search_path(patient, loop)
                    status, body = await self._http(raw, url.netloc, "GET", path, self._headers(tokens["HCP"]))
                elif kind == "read":
                    path = f"/fhir/Binary/{self.rnd.choice(spec['documents'])}"
                    status, body = await self._http(raw, url.netloc, "GET", path,
                                                    self._headers(tokens["HCP"], "application/pdf, */*"))
                elif kind in ("provide", "baseline_provide"):
                    path, (request, unique_id) = "/fhir", bodies.next()
                    status, body = await self._http(raw, url.netloc, "POST", path,
                                                    self._headers(tokens["HCP"], body=True), request)
                    if status == 200 and kind == "provide":
                        self.provided.append((unique_id, _document_id(body)))
                elif kind == "trail":
                    path = f"/fhir/AuditEvent?entity.identifier={quote(SPID_SYSTEM + '|' + patient)}&_count=20"
                    status, body = await self._http(raw, url.netloc, "GET", path, self._headers(tokens["PAT"][patient]))
                elif kind == "consent":  # PPQ-3 add, PPQ-5 retrieve, PPQ-3 remove: one request each
                    status, body, path = await self._consent_change(raw, url.netloc, patient, loop, sent, tally)
                    continue
                else:
                    raise ValueError(f"unknown kind {kind}")
                done = time.monotonic()
                tally.add(sent >= self.start and done <= self.end, status == expected, done - sent,
                          f"{status} {path[:80]}: {body[:160]!r}", status)
        finally:
            raw.close()

    async def _consent_change(self, raw, host: str, patient: str, loop: int, sent: float, tally: Tally):
        token = self.spec["tokens"]["PAT"][patient]
        path, status, body = "/fhir/Consent", "-", b""
        steps = (("POST", "/fhir/Consent", consent_301(patient, gln(self.rnd.randrange(10**6))), 201),
                 ("GET", f"/fhir/Consent?patient:identifier={quote(SPID_SYSTEM + '|' + patient)}", b"", 200),
                 ("DELETE", None, b"", 204))
        consent_id = None
        for method, path, body_out, expected in steps:
            path = path or f"/fhir/Consent/{consent_id}"
            started = time.monotonic()
            status, body = await self._http(raw, host, method, path, self._headers(token, body=bool(body_out)),
                                            body_out)
            done = time.monotonic()
            tally.add(started >= self.start and done <= self.end, status == expected, done - started,
                      f"{status} {method} {path[:60]}: {body[:160]!r}", status)
            if method == "POST":
                if status != 201:
                    break
                consent_id = orjson.loads(body)["id"]
        return status, body, path

    async def _mllp(self, node: dict[str, Any], number: int) -> None:
        spec, tally = self.spec["mllp"], self._tally("mllp")
        pdf = make_pdf(spec["run"] % 1000 + number)
        await asyncio.sleep(max(0.0, self.begin - time.monotonic()))
        reader, writer = await asyncio.open_connection("127.0.0.1", node["mllp"], limit=64 * 1024 * 1024)
        try:
            for loop in range(MAX_LOOPS):
                sent = time.monotonic()
                if sent >= self.end:
                    return
                control = f"S{spec['run']}-{number}-{loop}"
                unique_id = f"urn:oid:2.25.{spec['run']}{number:03d}{loop:09d}"
                message = START + mdm_t02(control, unique_id, pdf + control.encode(),
                                          local_system_oid=spec["local_system_oid"], local_id=spec["local_id"]) + END
                repeats = 2 if loop % 25 == 24 else 1  # now and then the same message again: the same answer
                for _ in range(repeats):
                    started = time.monotonic()
                    try:
                        writer.write(message)
                        await writer.drain()
                        ack = await asyncio.wait_for(reader.readuntil(END), REQUEST_TIMEOUT_S)
                        code = ack.split(b"MSA|", 1)[1][:2].decode() if b"MSA|" in ack else "??"
                    except Exception as error:  # noqa: BLE001 - counted as a failed message
                        code, ack = type(error).__name__, b""
                    done = time.monotonic()
                    self.codes[code] = self.codes.get(code, 0) + 1
                    if code == "AA":
                        self.acknowledged.append(unique_id)
                    tally.add(started >= self.start and done <= self.end, code == "AA", done - started,
                              f"{code} {ack[:200]!r}", 500 if code == "AR" else 200)
                    if code not in ("AA", "AE", "AR"):
                        return  # the connection is gone
        finally:
            writer.close()

    # -- the probes ---------------------------------------------------------------------------------
    async def _consent_probe(self, probe: dict[str, Any]) -> None:
        """Revoke through one node, read at once on every probe connection; grant through another, read again."""
        tokens = self.spec["tokens"]
        connections = [(node, RawConnection(urlsplit(node["base"]).hostname, urlsplit(node["base"]).port, self.ssl))
                       for node in self.nodes for _ in range(probe["connections_per_node"])]
        read_path = f"/fhir/Binary/{probe['document']}"
        patient_headers = self._headers(tokens["PAT"][probe["spid"]], body=True)
        grant_id = self.invariants["grant"] = probe["grant"]  # the grant in force (the next window starts from it)
        await asyncio.sleep(max(0.0, self.start - time.monotonic()))

        async def read_everywhere() -> list:
            return await asyncio.gather(*(
                self._http(raw, urlsplit(node["base"]).netloc, "GET", read_path,
                           self._headers(tokens["HCP"], "application/pdf, */*"))
                for node, raw in connections))

        try:
            await read_everywhere()  # every probe connection open (and its worker's cache warm)
            for turn in range(MAX_LOOPS):
                if time.monotonic() >= self.end - 0.5:
                    break
                revoking = self.nodes[turn % len(self.nodes)]
                host = urlsplit(revoking["base"]).netloc
                raw = connections[(turn * probe["connections_per_node"]) % len(connections)][1]
                status, body = await self._http(raw, host, "DELETE", f"/fhir/Consent/{grant_id}", patient_headers)
                if status != 204:
                    self.invariants["probe_failures"].append(f"revoke {status} {body[:200]!r}")
                    break
                self.invariants["revocations"] += 1
                answers = await read_everywhere()
                self.invariants["decisions_checked"] += len(answers)
                self.invariants["stale_decisions"] += sum(1 for status, _ in answers if status == 200)
                unexpected = [s for s, _ in answers if s not in (200, 404)]
                if unexpected:
                    self.invariants["probe_failures"].append(f"read after revocation answered {unexpected[:3]}")
                granting = self.nodes[(turn + 1) % len(self.nodes)]
                raw = connections[((turn + 1) * probe["connections_per_node"]) % len(connections)][1]
                status, body = await self._http(raw, urlsplit(granting["base"]).netloc, "POST", "/fhir/Consent",
                                                patient_headers, consent_301(probe["spid"], probe["gln"]))
                if status != 201:
                    self.invariants["probe_failures"].append(f"grant {status} {body[:200]!r}")
                    break
                grant_id = self.invariants["grant"] = orjson.loads(body)["id"]
                answers = await read_everywhere()
                self.invariants["late_grants"] += sum(1 for status, _ in answers if status != 200)
                await asyncio.sleep(0.1)
        finally:
            for _, raw in connections:
                raw.close()

    async def _paging_probe(self, probe: dict[str, Any]) -> None:
        """Walk every page of the provide patient's documents, each page from the next node."""
        token = self.spec["tokens"]["HCP"]
        raws = [RawConnection(urlsplit(n["base"]).hostname, urlsplit(n["base"]).port, self.ssl) for n in self.nodes]
        first = (f"/fhir/DocumentReference?patient.identifier={quote(SPID_SYSTEM + '|' + probe['spid'])}"
                 f"&_count={probe['count']}")
        await asyncio.sleep(max(0.0, self.start - time.monotonic()))
        try:
            for _ in range(MAX_LOOPS):
                if time.monotonic() >= self.end - 0.5:
                    break
                known = set(probe["known"]) | {entry for _, entry in self.provided}  # acknowledged before page 1
                seen: list[str] = []
                path, page = first, 0
                while path:
                    node = page % len(self.nodes)
                    status, body = await self._http(raws[node], urlsplit(self.nodes[node]["base"]).netloc, "GET",
                                                    path, self._headers(token))
                    if status != 200:
                        self.invariants["probe_failures"].append(f"page {page} answered {status} {body[:200]!r}")
                        return
                    bundle = orjson.loads(body)
                    seen += [e["resource"]["id"] for e in bundle.get("entry", [])]
                    following = next((link["url"] for link in bundle.get("link", []) if link["relation"] == "next"),
                                     None)
                    path = _path_of(following) if following else None
                    page += 1
                self.invariants["pages_walked"] += page
                self.invariants["paged_documents"] += len(seen)
                self.invariants["repeats"] += len(seen) - len(set(seen))
                self.invariants["skips"] += len(known - set(seen))
        finally:
            for raw in raws:
                raw.close()


def search_path(spid: str, loop: int) -> str:
    base = f"/fhir/DocumentReference?patient.identifier={SPID_SYSTEM}|{spid}&_count=10"
    variants = (base, base + "&status=current", base + f"&type={SNOMED}|373942005", base + "&date=ge2026-06-01")
    return quote(variants[loop % len(variants)], safe="/?=&:,")


def _document_id(body: bytes) -> str:
    answer = orjson.loads(body)
    return next(e["response"]["location"].split("/DocumentReference/")[1].split("/")[0] for e in answer["entry"]
                if "/DocumentReference/" in e["response"]["location"])


def _path_of(url: str) -> str:
    """A next link (built from EPR_PUBLIC_BASE_URL, the nodes' one public name) as a path on any node."""
    parts = urlsplit(url)
    return f"{parts.path}?{parts.query}"
