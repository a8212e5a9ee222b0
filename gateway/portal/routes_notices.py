"""The emergency accesses the patient is told of (issue 27 item 10): on the landing page every one not
yet seen, naming the professional, the documents and when; on the trail all of them. "I have seen
these" marks the ones that were shown (never one that arrived since), as showing them on the trail does.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from adapters.cara.identifier_syntax import is_printable_id
from gateway.http.routes.common import run_use_case
from gateway.portal.document_types import OTHER, type_label
from gateway.pages.i18n import N_
from gateway.portal.pages import portal, signed_in

# What the professional did, as the notice says it (the use-case's `what`).
WHAT = {"search": N_("searched your documents in an emergency"),
        "retrieve": N_("opened a document in an emergency"),
        "read metadata": N_("looked at a document's details in an emergency")}
MAX_MARKED = 200


async def emergency_notices(request: Request, principal) -> list[dict]:
    """Every emergency-access notice, newest first, as the page shows it: the professional under the
    directory's name where it knows their GLN (one name per professional), each document by its type."""
    directory = portal(request).directory
    notices = await run_use_case(request, portal(request).services.portal.emergency_notices, principal=principal,
                                 spid=principal.patient_spid)
    return [{"id": n.id, "at": n.at, "who": directory.name_of(n.by_id) or n.by_name,
             "acting_for": (directory.name_of(n.acting_for) or n.acting_for) if n.acting_for else "",
             "organisation": directory.organisation_of(n.by_id) or n.organisation or "",
             "what": WHAT.get(n.what, WHAT["retrieve"]), "seen": n.seen,
             "documents": [{"id": entry_id, "type": type_label(system, code) or OTHER}
                           for entry_id, system, code in n.documents],
             "unnamed": n.unique_ids - len(n.documents)} for n in notices]


@signed_in
async def mark_seen(request: Request, principal, form: dict[str, str]) -> Response:
    ids = [i for i in form.get("notification_ids", "").split(",") if is_printable_id(i)][:MAX_MARKED]
    if ids:
        await run_use_case(request, portal(request).services.portal.mark_notifications_seen, principal=principal,
                           spid=principal.patient_spid, notification_ids=ids)
    return RedirectResponse("/portal/documents?done=notices", status_code=303)
