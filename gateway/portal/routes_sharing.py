"""Who may see my record: the patient's policies (PPQ-5) as they act today (`access_summary`), and every
change to them (PPQ-3), each explained in plain words on a confirmation page before it is saved.

A form refused (`FormProblem`) comes back with what was typed kept and the message at its field
(`aria-describedby`), the field focused (`autofocus`): never a message at the top of a long page."""

from __future__ import annotations

import orjson
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from adapters.cara.vocabulary import SPID_SYSTEM
from consent.policies import Policy
from consent.ppqm import consent_from_policy
from gateway.pages import csrf
from gateway.portal.access_summary import summarise
from gateway.portal.directory import authors_of
from gateway.portal.pages import portal, render, signed_in
from gateway.portal.sharing import ACTIONS, FormProblem, current_policies, plan
from gateway.http.routes.common import base_url, run_use_case

FORM_FIELDS = ("action", "gln", "directory_gln", "group", "level", "end", "emergency", "provide_level",
               "representative", "consent_id")
# Where each form sits on the page (its section's id): where a confirmation's Cancel goes back to.
SECTIONS = {"grant-professional": "grant-pro", "grant-group": "grant-group", "block": "block",
            "emergency": "emergency", "provide-level": "provide", "representative": "represent", "revoke": "now"}


@signed_in
async def sharing(request: Request, principal) -> Response:
    return await _sharing_page(request, principal, problem=None, form={}, status=200,
                               done=request.query_params.get("done") == "saved")


@signed_in
async def preview(request: Request, principal, form: dict[str, str]) -> Response:
    try:
        change, directory = await _planned(request, principal, form)
    except FormProblem as problem:
        return await _sharing_page(request, principal, problem=problem, form=form, status=400, done=False)
    fields = {k: v for k, v in form.items() if k in FORM_FIELDS and k != csrf.FIELD}
    message, values = change.explanation
    person = directory.representative(form.get("representative", "").strip()) \
        if form.get("action") == "representative" else None
    return render(request, "confirm.html", message=message, values=values, fields=fields, person=person,
                  apply_url="/portal/sharing/apply", cancel_url=f"/portal/sharing#{SECTIONS[form['action']]}")


@signed_in
async def apply(request: Request, principal, form: dict[str, str]) -> Response:
    try:  # the preview is not trusted: the same fields are checked again against the policies as they are now
        change, _directory = await _planned(request, principal, form)
    except FormProblem as problem:
        return await _sharing_page(request, principal, problem=problem, form=form, status=400, done=False)
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


async def _planned(request: Request, principal, form: dict[str, str]):
    policies = await policies_of(request, principal)
    directory = portal(request).directory
    gln = (form.get("gln") or form.get("directory_gln") or "").strip()
    if form.get("action") in ("grant-professional", "block") and gln and directory.name_of(gln) is None:
        # A professional the directory does not know is named as the record names them, if it does
        # (one name per professional on every page); that takes a search of the record, audited as such.
        directory = await _with_record_authors(request, principal, directory)
    change = plan(form, spid=principal.patient_spid, policies=policies, today=portal(request).services.policies.today(),
                  directory=directory)
    return change, directory


async def policies_of(request: Request, principal) -> list[Policy]:
    """The patient's policies as PPQ-5 answers them (audited as that search)."""
    consents = await run_use_case(request, portal(request).services.policies.retrieve, principal=principal,
                                  params=[("patient:identifier", f"{SPID_SYSTEM}|{principal.patient_spid}")],
                                  base_url=base_url(request))
    return current_policies(consents)


async def _with_record_authors(request: Request, principal, directory):
    found = await run_use_case(request, portal(request).services.exchange.find, principal=principal,
                               params=[("patient.identifier", f"{SPID_SYSTEM}|{principal.patient_spid}"),
                                       ("_count", "100")], base_url=base_url(request))
    return directory.with_authors(authors_of([e["resource"] for e in orjson.loads(found).get("entry", [])]))


async def _sharing_page(request: Request, principal, *, problem: FormProblem | None, form: dict[str, str],
                        status: int, done: bool):
    services = portal(request).services
    policies = await policies_of(request, principal)
    directory = await _with_record_authors(request, principal, portal(request).directory)
    today = services.policies.today()
    summary = summarise(policies, spid=principal.patient_spid, today=today, name_of=directory.name_of)
    emergency = next((p.level for p in policies if p.template == 202), None) or "off"
    action = form.get("action", "") if problem else ""
    return render(request, "sharing.html", status, summary=summary, emergency=emergency, directory=directory,
                  problem=problem, problem_action=action if action in ACTIONS else "",
                  kept={k: v for k, v in form.items() if k in FORM_FIELDS} if problem else {},
                  done=done, today=today.isoformat())
