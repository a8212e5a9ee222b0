"""FHIR REST conventions every route shares (http://hl7.org/fhir/R4/http.html, search.html), applied
once at the face so that no route can forget them:

- `_format` (json, application/json, application/fhir+json) is accepted everywhere and taken out of
  the query before a route parses it; XML asked for (`_format=xml`, or an `Accept` naming XML and
  no JSON) answers 406 with an OperationOutcome.
- `HEAD` wherever `GET`: the GET is run and its body dropped (status and headers kept).
- `POST [type]/_search` with a form body is the GET of `[type]` with the form's parameters.
- `Prefer: handling=lenient` on a search drops the parameters the search does not know (the
  list in `search_parameters`) and names them in an OperationOutcome entry (`search.mode=outcome`);
  strict stays the default.
- At most `MAX_SEARCH_PARAMETERS` (400) parameters, query and form together, on every request (GET,
  HEAD, POST _search alike): more is a 400 before any route parses them.
- One `_count` rule for every search: given once, a non-negative integer in ASCII digits, 0 = the
  total only, above the search's maximum capped to it; a search that does not page (PPQ-5,
  Communication) has its one page cut to `_count` entries (the total stays the number of matches).

The 406 and the parameter cap's 400 are answered here, before authentication: they reveal nothing and
touch no record, so they are not exchanges and have no audit record (the access log has them). Everything else reaches the routes,
their door (`security.py`), access decision and audit as any other request.
"""

from __future__ import annotations

import re
from urllib.parse import parse_qsl, urlencode

import orjson
from starlette.datastructures import Headers
from starlette.middleware.gzip import GZipMiddleware
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from adapters.cara.errors import Issue
from gateway.http.outcomes import HttpProblem, operation_outcome, refusal_before_routing
from gateway.http.route_table import methods_for_path
from gateway.http.search_parameters import MAX_SEARCH_PARAMETERS, SEARCHES, search_for_path
from adapters.cara.identifier_syntax import ascii_int

__all__ = ["RestConventions", "GzipWhenAccepted", "allowed_methods", "MAX_SEARCH_FORM_BYTES"]

JSON_FORMATS = frozenset({"json", "application/json", "application/fhir+json", "application/json+fhir"})
XML_FORMATS = frozenset({"xml", "text/xml", "application/xml", "application/fhir+xml", "application/xml+fhir"})
FORM = "application/x-www-form-urlencoded"
_COUNT = re.compile(rb"(?:^|&)_count=([0-9]{1,9})(?:&|$)")
# The searches that read `_count` themselves, and up to what: a plain GET within it skips the rewriting.
_OWN_COUNT = {search.path.encode(): search.max_count for search in SEARCHES if search.reads_count and search.max_count}
TOTALS = ("accurate", "estimate", "none")
# Kept whatever _elements asks (R4 cardinality 1..*), besides resourceType, id and meta.
MANDATORY = {"DocumentReference": ("status", "content"), "Consent": ("status", "scope", "category"),
             "AuditEvent": ("type", "recorded", "agent", "source"), "Binary": ("contentType",),
             "Bundle": ("type",), "Communication": ("status",), "List": ("status", "mode")}
SUBSETTED = {"system": "http://terminology.hl7.org/CodeSystem/v3-ObservationValue", "code": "SUBSETTED"}
MAX_SEARCH_FORM_BYTES = 64 * 1024  # a search's parameters, not a document


class RestConventions:
    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith("/fhir") or _plain(scope):
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        params = parse_qsl(scope["query_string"].decode("latin-1"), keep_blank_values=True,
                           max_num_fields=None)
        if len(params) > MAX_SEARCH_PARAMETERS:
            await _too_many(len(params))(scope, receive, send)
            return
        refusal = _format_refusal(params, headers.get("accept", ""))
        if refusal is not None:
            await refusal_before_routing(HttpProblem(406, "not-supported", refusal))(scope, receive, send)
            return
        asked_format = next((value for name, value in params if name == "_format"), None)
        params = [(name, value) for name, value in params if name != "_format"]
        path, method = scope["path"], scope["method"]
        if method == "POST" and path.rstrip("/").endswith("/_search"):
            form = await _search_form(headers, receive)
            if isinstance(form, HttpProblem):
                await refusal_before_routing(form)(scope, receive, send)
                return
            params += form
            if len(params) > MAX_SEARCH_PARAMETERS:
                await _too_many(len(params))(scope, receive, send)
                return
            path, method, receive = path.rstrip("/").removesuffix("/_search"), "GET", _empty_body
        head = method == "HEAD"
        if head:
            method = "GET"
        ignored: list[str] = []
        search = search_for_path(path) if method == "GET" else None
        if search is not None and _lenient(headers):
            ignored = sorted({name for name, _ in params if name not in search.names})
            params = [(name, value) for name, value in params if name in search.names]
        elements = [e.strip() for name, value in params if name == "_elements" for e in value.split(",") if e.strip()]
        params = [(name, value) for name, value in params if name != "_elements"]
        count_only, limit = False, None
        if search is not None:
            result = _search_result(params, search)
            if isinstance(result, Issue):
                code = "not-supported" if result.location == "_summary" else "invalid"
                await refusal_before_routing(HttpProblem(400, code, result.message, location=result.location))(
                    scope, receive, send)
                return
            params, count_only, limit = result
        # `fhir_format`: a JSON _format was asked (Binary answers a resource then, see document_headers).
        inner = {**scope, "method": method, "path": path, "raw_path": path.encode(),
                 "query_string": urlencode(params).encode("latin-1"), "fhir_format": asked_format}
        if head:
            send = _without_body(send)
        if ignored or elements or count_only or limit is not None:
            send = _rewriting(send, ignored=ignored, elements=elements, count_only=count_only, limit=limit)
        try:
            await self.app(inner, receive, send)
        finally:  # the route that answered, for the metrics counted outside (access_log)
            if "route" in inner:
                scope["route"] = inner["route"]


def _plain(scope: Scope) -> bool:
    """Nothing to do (the usual search or read): a scan of the raw query and headers, no parsing, so the
    hot reads pay next to nothing for the conventions."""
    query = scope["query_string"]
    if scope["method"] != "GET" or b"_format" in query or b"_summary" in query or b"_elements" in query \
            or b"_total" in query or query.count(b"&") >= MAX_SEARCH_PARAMETERS:
        return False
    if b"_count" in query:  # 0, above the maximum, twice, or a search that does not read it: _search_result
        count = _COUNT.search(query)
        maximum = _OWN_COUNT.get(scope["path"].rstrip("/").encode(), 0)
        if count is None or query.count(b"_count") > 1 or not 0 < int(count.group(1)) <= maximum:
            return False
    for name, value in scope["headers"]:
        if (name == b"accept" and b"xml" in value) or name == b"prefer":
            return False
    return True


def allowed_methods(app, path: str) -> str:
    """The methods of every route matching `path`, for a 405's `Allow`."""
    return ", ".join(sorted(methods_for_path(app.router.routes, path)))


def _format_refusal(params: list[tuple[str, str]], accept: str) -> str | None:
    formats = [value.split(";")[0].strip().lower() for name, value in params if name == "_format"]
    for value in formats:
        if value not in JSON_FORMATS:
            kind = "XML is" if value in XML_FORMATS else f"_format={value} is"
            return f"{kind} not served: this server speaks application/fhir+json only"
    if not formats and accept:
        asked = {part.split(";")[0].strip().lower() for part in accept.split(",")}
        if asked & XML_FORMATS and not asked - XML_FORMATS:
            return "XML is not served: this server speaks application/fhir+json only (Accept)"
    return None


def _lenient(headers: Headers) -> bool:
    preferences = {p.strip().lower() for value in headers.getlist("prefer") for p in value.split(";")}
    return "handling=lenient" in {p.replace(" ", "") for p in preferences}


async def _search_form(headers: Headers, receive: Receive) -> list[tuple[str, str]] | HttpProblem:
    media_type = headers.get("content-type", "").split(";")[0].strip().lower()
    if media_type not in (FORM, ""):
        return _form_refused(415, f"POST [type]/_search takes the parameters as {FORM}")
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if len(body) > MAX_SEARCH_FORM_BYTES:
            return _form_refused(413, f"the search form exceeds {MAX_SEARCH_FORM_BYTES} bytes")
        if not message.get("more_body", False):
            break
    try:
        return parse_qsl(body.decode("utf-8"), keep_blank_values=True, strict_parsing=False)
    except UnicodeDecodeError:
        return _form_refused(415, "the search form is not UTF-8")


def _form_refused(status: int, message: str) -> HttpProblem:
    return HttpProblem(status, "not-supported", message, location="Content-Type")


async def _empty_body() -> Message:
    return {"type": "http.request", "body": b"", "more_body": False}


def _without_body(send: Send) -> Send:
    async def head_send(message: Message) -> None:
        if message["type"] == "http.response.body":
            if message.get("more_body", False):
                return
            message = {"type": "http.response.body", "body": b"", "more_body": False}
        await send(message)
    return head_send


def _search_result(params: list[tuple[str, str]], search) -> tuple[list[tuple[str, str]], bool, int | None] | Issue:
    """`_total` accepted (the total is always exact), `_summary=count` and `_count=0` ask the total only,
    and the one `_count` rule (module docstring). Returns the parameters the search gets, whether only the
    total is wanted and how many entries a search that does not page may answer; or the refusal."""
    totals = [v for n, v in params if n == "_total"]
    if any(v not in TOTALS for v in totals):
        return Issue(f"_total must be one of {', '.join(TOTALS)}", "_total")
    summaries = [v for n, v in params if n == "_summary"]
    if any(v != "count" for v in summaries):
        return Issue("_summary: only count is served", "_summary")
    counts = [ascii_int(v) for n, v in params if n == "_count"]
    if len(counts) > 1 or None in counts:
        return Issue("_count is given once, as a non-negative integer (ASCII digits)", "_count")
    count = counts[0] if counts else None
    if count is not None and search.max_count is not None:
        count = min(count, search.max_count)  # capped: the self link, built from what the search got, says so
    count_only = bool(summaries) or count == 0
    kept = [(n, v) for n, v in params if n not in ("_total", "_totalMethod", "_summary", "_count")]
    if count_only:
        return (kept + [("_count", "0")] if search.zero_count else kept), True, None
    if count is None:
        return kept, False, None
    if search.reads_count:
        return kept + [("_count", str(count))], False, None
    return kept, False, count


def _too_many(given: int) -> Response:
    return refusal_before_routing(HttpProblem(400, "too-costly",
                                        f"{given} parameters: a request takes at most {MAX_SEARCH_PARAMETERS}"))


def _rewriting(send: Send, *, ignored: list[str], elements: list[str], count_only: bool,
               limit: int | None = None) -> Send:
    """Rewrites a 200 JSON answer (buffered: a search page or one resource): the OperationOutcome naming
    ignored parameters, the total without entries, `_elements`."""
    start: Message | None = None
    chunks: list[bytes] = []

    async def rewriting_send(message: Message) -> None:
        nonlocal start
        if message["type"] == "http.response.start":
            start = message
            return
        if message["type"] != "http.response.body" or start is None:
            await send(message)
            return
        chunks.append(message.get("body", b""))
        if message.get("more_body", False):
            return
        body = b"".join(chunks)
        if start["status"] == 200:
            body = _rewrite(body, ignored=ignored, elements=elements, count_only=count_only, limit=limit)
        headers = [(k, v) for k, v in start["headers"] if k.lower() != b"content-length"]
        headers.append((b"content-length", str(len(body)).encode()))
        await send({**start, "headers": headers})
        await send({"type": "http.response.body", "body": body, "more_body": False})

    return rewriting_send


def _rewrite(body: bytes, *, ignored: list[str], elements: list[str], count_only: bool, limit: int | None) -> bytes:
    try:
        resource = orjson.loads(body)
    except orjson.JSONDecodeError:
        return body  # the raw bytes of a document (Binary): nothing to rewrite
    if not isinstance(resource, dict):
        return body
    if resource.get("resourceType") == "Bundle" and resource.get("type") == "searchset":
        if count_only:
            resource.pop("entry", None)
            resource["link"] = [link for link in resource.get("link", []) if link.get("relation") == "self"]
        elif limit is not None and len(resource.get("entry", [])) > limit:
            resource["entry"] = resource["entry"][:limit]
        elif elements:
            for entry in resource.get("entry", []):
                if entry.get("search", {}).get("mode") == "match":
                    entry["resource"] = _subset(entry["resource"], elements)
        if ignored:
            outcome = operation_outcome([Issue(f"unknown search parameter {name} ignored (Prefer: handling=lenient)",
                                               name) for name in ignored], code="not-supported", severity="warning")
            resource.setdefault("entry", []).append({"resource": outcome, "search": {"mode": "outcome"}})
    elif elements:
        resource = _subset(resource, elements)
    return orjson.dumps(resource)


def _subset(resource: dict, elements: list[str]) -> dict:
    keep = {"resourceType", "id", "meta", *MANDATORY.get(resource.get("resourceType", ""), ()), *elements}
    subset = {name: value for name, value in resource.items() if name in keep}
    meta = dict(subset.get("meta", {}))
    meta["tag"] = [*meta.get("tag", []), SUBSETTED]
    subset["meta"] = meta
    return subset


class GzipWhenAccepted:
    """Starlette's gzip (answers over 1 KB) for clients that accept it; the others go straight through,
    without the identity responder's buffering."""

    def __init__(self, app: ASGIApp, minimum_size: int = 1024):
        self.app = app
        self.gzip = GZipMiddleware(app, minimum_size=minimum_size)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and any(name == b"accept-encoding" and b"gzip" in value
                                           for name, value in scope["headers"]):
            await self.gzip(scope, receive, send)
        else:
            await self.app(scope, receive, send)
