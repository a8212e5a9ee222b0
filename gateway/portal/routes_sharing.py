"""Who may see my record: the patient's policies (PPQ-5) and every change to them (PPQ-3), each
explained in plain words on a confirmation page before it is saved."""

from __future__ import annotations

import orjson
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from adapters.cara.vocabulary import SPID_SYSTEM
from consent.ppqm import consent_from_policy
from gateway.pages import csrf
from gateway.portal.directory import authors_of
from gateway.portal.pages import portal, render, signed_in
from gateway.portal.sharing import FormProblem, consent_id, current_policies, plan
from gateway.http.routes.common import base_url, run_use_case

FORM_FIELDS = ("action", "gln", "directory_gln", "group", "level", "end", "emergency", "provide_level",
               "representative", "consent_id")


@signed_in
async def sharing(request: Request, principal) -> Response:
    return await _sharing_page(request, principal, problem=None, status=200,
                               done=request.query_params.get("done") == "saved")


@signed_in
async def preview(request: Request, principal, form: dict[str, str]) -> Response:
    policies, directory = await _state(request, principal)
    try:
        change = plan(form, spid=principal.patient_spid, policies=policies,
                      today=portal(request).services.policies.today(), name_of=directory.name_of)
    except FormProblem as problem:
        return await _sharing_page(request, principal, problem=problem, status=400, done=False)
    fields = {k: v for k, v in form.items() if k in FORM_FIELDS and k != csrf.FIELD}
    message, values = change.explanation
    return render(request, "confirm.html", message=message, values=values, fields=fields)


@signed_in
async def apply(request: Request, principal, form: dict[str, str]) -> Response:
    policies, directory = await _state(request, principal)
    try:  # the preview is not trusted: the same fields are checked again against the policies as they are now
        change = plan(form, spid=principal.patient_spid, policies=policies,
                      today=portal(request).services.policies.today(), name_of=directory.name_of)
    except FormProblem as problem:
        return await _sharing_page(request, principal, problem=problem, status=400, done=False)
    exchange = portal(request).services.policies
    if change.method == "DELETE":
        await run_use_case(request, exchange.remove, principal=principal, consent_id=change.consent_id)
    else:
        body = orjson.dumps(consent_from_policy(change.policy))
        if change.method == "PUT":
            await run_use_case(request, exchange.replace, principal=principal, consent_id=change.consent_id,
                               body=body)
        else:
            await run_use_case(request, exchange.add, principal=principal, body=body)
    return RedirectResponse("/portal/sharing?done=saved", status_code=303)


async def _state(request: Request, principal):
    services = portal(request).services
    consents = await run_use_case(request, services.policies.retrieve, principal=principal,
                                  params=[("patient:identifier", f"{SPID_SYSTEM}|{principal.patient_spid}")],
                                  base_url=base_url(request))
    return current_policies(consents), portal(request).directory


async def _sharing_page(request: Request, principal, *, problem: FormProblem | None, status: int, done: bool):
    services = portal(request).services
    policies, directory = await _state(request, principal)
    found = await run_use_case(request, services.exchange.find, principal=principal,
                               params=[("patient.identifier", f"{SPID_SYSTEM}|{principal.patient_spid}"),
                                       ("_count", "100")], base_url=base_url(request))
    directory = directory.with_authors(authors_of([e["resource"] for e in orjson.loads(found).get("entry", [])]))
    today = services.policies.today()
    emergency = next((p.level for p in policies if p.template == 202), None) or "off"
    provide = next((p.provide_level for p in policies if p.template == 203), None) or "normal"

    def row(policy):
        return {"id": consent_id(policy), "who": directory.name_of(policy.subject_id) or policy.subject_id,
                "subject": policy.subject_id, "level": policy.level, "end": policy.end,
                "in_force": policy.in_force(today), "template": policy.template}

    return render(request, "sharing.html", status,
                  grants=[row(p) for p in policies if p.is_grant],
                  blocks=[row(p) for p in policies if p.is_block],
                  representatives=[row(p) for p in policies if p.template == 303],
                  emergency=emergency, provide=provide, directory=directory, problem=problem, done=done,
                  today=today.isoformat())
