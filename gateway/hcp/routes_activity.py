"""My activity: the signed-in professional's own recent accesses to patients' records (and their
assistants' acting for them), as the ledger holds them for their GLN (`ProfessionalExchange.activity`),
so a practice can answer "who opened this?"."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from gateway.hcp.site import hcp, signed_in
from gateway.http.routes.common import run_use_case
from gateway.pages.i18n import N_

SHOWN = 100
# What each CH:ATC event type was, as the professional reads it (catalogue messages).
WHAT = {"ATC_DOC_CREATE": N_("added a document"), "ATC_DOC_READ": N_("opened a document"),
        "ATC_DOC_UPDATE": N_("changed a document"), "ATC_DOC_DELETE": N_("removed a document"),
        "ATC_DOC_SEARCH": N_("searched the documents")}
OTHER = {"ITI-78": N_("looked up the patient"), "ITI-119": N_("looked up the patient"),
         "hcp-emergency": N_("claimed an emergency access")}
ROLES = {"HCP": N_("Healthcare professional"), "ASS": N_("Assistant")}


@signed_in
async def activity(request: Request, principal) -> Response:
    site = hcp(request)
    rows = await run_use_case(request, site.services.professionals.activity, principal=principal, count=SHOWN)
    return site.render(request, "activity.html", rows=rows, what=WHAT, other=OTHER, roles=ROLES, shown=SHOWN)
