"""One error table for the FHIR face: every error answer is built in `gateway/http/outcomes.py`.

Another module of the face may raise a typed refusal (`HttpProblem`, a `RecordError`) or, in a
middleware that answers before routing, answer one through `outcomes.refusal_before_routing` (audited
as the handler audits); it does not build an OperationOutcome with an error severity or an answer with
an error status itself, nor render a refusal unaudited (`problem_response` is the table's own). An
informational or warning OperationOutcome (`Prefer: return=OperationOutcome`, the lenient search's
note) is not an error answer."""

from __future__ import annotations

import ast

from source_tree import product_modules

TABLE = "gateway.http.outcomes"
NOT_ERRORS = ("information", "warning")
RESPONSE_CALLS = ("fhir_response", "Response", "JSONResponse", "PlainTextResponse", "HTMLResponse")


def error_answers(source: str) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.Call):
            continue
        name = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
        keywords = {k.arg: k.value for k in node.keywords}
        if name == "operation_outcome":
            severity = keywords.get("severity")
            if not (isinstance(severity, ast.Constant) and severity.value in NOT_ERRORS):
                found.append((node.lineno, "an error OperationOutcome"))
        elif name == "problem_response":
            found.append((node.lineno, "a refusal rendered without its audit record"))
        elif name in RESPONSE_CALLS:
            status = keywords.get("status_code") or keywords.get("status") or (
                node.args[1] if len(node.args) > 1 else None)
            if isinstance(status, ast.Constant) and isinstance(status.value, int) and status.value >= 400:
                found.append((node.lineno, f"a {status.value} answer"))
    return [f"line {line}: {what}" for line, what in sorted(found)]


def test_no_module_of_the_fhir_face_but_outcomes_builds_an_error_answer():
    modules = {name: path for name, path in product_modules().items()
               if name.startswith("gateway.http") and name != TABLE}
    found = {name: error_answers(path.read_text()) for name, path in modules.items()}
    assert {name: answers for name, answers in found.items() if answers} == {}


def test_the_check_finds_planted_error_answers():
    planted = ("async def refuse(scope, receive, send):\n"
               "    outcome = operation_outcome([Issue('no')], code='not-supported')\n"
               "    await fhir_response(outcome, 406)(scope, receive, send)\n"
               "    return Response(b'', status_code=503)\n"
               "def fine():\n"
               "    note = operation_outcome([Issue('ok')], code='informational', severity='information')\n"
               "    return fhir_response(note, 200), refusal_before_routing(HttpProblem(406, 'not-supported', 'no'))\n"
               "def unaudited():\n"
               "    return problem_response(HttpProblem(400, 'too-costly', 'no'))\n")
    assert error_answers(planted) == ["line 2: an error OperationOutcome", "line 3: a 406 answer",
                                      "line 4: a 503 answer", "line 9: a refusal rendered without its audit record"]
