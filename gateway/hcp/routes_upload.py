"""Uploading a PDF for a patient with its metadata (pickers from the CH value sets, in the page's language),
or a new version replacing one the professional may read (RPLC): through `ProfessionalExchange.upload`,
an ITI-65 Provide Document Bundle through the ITI-65 use-case. A refusal names its field, keeps what was
typed, and stores nothing."""

from __future__ import annotations

from datetime import UTC, datetime

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from adapters.cara import value_sets
from adapters.cara.errors import InvalidInput, ProfileViolation
from adapters.cara.model import Code
from adapters.cara.upload_bundle import Upload
from consent.errors import ProvideLevelViolation
from gateway.auth.errors import AccessRefused
from gateway.exchanges.professionals import LANGUAGES
from gateway.hcp.site import hcp, signed_in
from gateway.http.routes.common import base_url, run_use_case
from gateway.pages.i18n import N_

FIELDS = ("title", "type", "class", "facility", "setting", "date", "language", "confidentiality")
# What the page says for each field a refusal names (`InvalidInput.location`).
PROBLEMS = {
    "file": N_("This file is not a PDF. Choose a PDF document. Nothing was stored."),
    "file-size": N_("The file is larger than the limit of %(megabytes)d MB. Nothing was stored."),
    "title": N_("Give the document a title (at most 200 characters)."),
    "type": N_("Choose the type of document from the list."),
    "class": N_("Choose the class of document from the list."),
    "facility": N_("Choose the type of facility from the list."),
    "setting": N_("Choose the practice setting from the list."),
    "date": N_("Give the document's date (not in the future)."),
    "language": N_("Choose the document's language from the list."),
    "confidentiality": N_("Choose the confidentiality from the list."),
}
LANGUAGE_NAMES = {"fr-CH": N_("French"), "de-CH": N_("German"), "it-CH": N_("Italian"), "rm-CH": N_("Romansh"),
                  "en": N_("English")}


@signed_in
async def upload_form(request: Request, principal) -> Response:
    site, pid = hcp(request), request.path_params["pid"]
    patient = await run_use_case(request, site.services.professionals.patient, principal=principal, pid=pid)
    lang = site.language_of(request)
    values = {"date": datetime.now(UTC).date().isoformat(), "language": f"{lang}-CH" if lang != "en" else "en",
              "confidentiality": "normal", "replaces": request.query_params.get("replaces", "")}
    return _form(request, 200, patient=patient, values=values, problem=None, field=None)


@signed_in
async def upload(request: Request, principal, form: dict[str, str]) -> Response:
    site, pid = hcp(request), request.path_params["pid"]
    patient = await run_use_case(request, site.services.professionals.patient, principal=principal, pid=pid)
    values = {name: (form.get(name) or "").strip() for name in (*FIELDS, "replaces")}
    file = request.state.page_files.get("file")
    content = await file.read(site.max_upload_bytes + 1) if file is not None else b""
    if len(content) > site.max_upload_bytes:
        return _form(request, 413, patient=patient, values=values, field="file", problem=PROBLEMS["file-size"])
    document = Upload(content=content, title=values["title"], type_code=_code("type", values["type"]),
                      class_code=_code("class", values["class"]), facility_type=_code("facility", values["facility"]),
                      practice_setting=_code("setting", values["setting"]), date=values["date"],
                      language=values["language"], confidentiality=values["confidentiality"],
                      replaces=values["replaces"] or None)
    try:
        await run_use_case(request, site.services.professionals.upload, principal=principal, pid=pid,
                           upload=document, base_url=base_url(request))
    except InvalidInput as invalid:
        location = invalid.issues[0].location
        field = "file" if location == "file-size" else location if location in PROBLEMS else None
        return _form(request, 400, patient=patient, values=values, field=field,
                     problem=PROBLEMS.get(location or "", N_("The document was refused: its metadata are not valid. "
                                                         "Nothing was stored.")))
    except ProvideLevelViolation:
        return _form(request, 403, patient=patient, values=values, field="confidentiality", problem=N_(
            "The patient chose a higher minimum confidentiality for new documents. Nothing was stored."))
    except AccessRefused:
        if values["confidentiality"] == "secret":
            return _form(request, 403, patient=patient, values=values, field="confidentiality", problem=N_(
                "Secret documents are filed by professionals only for a patient who chose secret for new "
                "documents. Nothing was stored."))
        return _form(request, 403, patient=patient, values=values, field=None, problem=N_(
            "The document was refused with your rights for this patient. Nothing was stored."))
    except ProfileViolation:  # e.g. the document it replaces is not one this professional may name
        return _form(request, 422, patient=patient, values=values, field=None, problem=N_(
            "The document was refused: the document it replaces is not one you may read. Nothing was stored."))
    return RedirectResponse(f"/hcp/patients/{pid}?done=uploaded", status_code=303)


def _form(request: Request, status: int, *, patient, values, problem, field) -> Response:
    site = hcp(request)
    lang = site.language_of(request)
    pickers = {kind: sorted(((c.code.code, c.name(lang)) for c in value_sets.value_set(kind)),
                            key=lambda c: c[1].casefold()) for kind in value_sets.KINDS}
    return site.render(request, "upload.html", status, patient=patient, values=values, problem=problem, field=field,
                       pickers=pickers, languages_of_documents=[(code, LANGUAGE_NAMES[code]) for code in LANGUAGES],
                       megabytes=site.max_upload_bytes // (1024 * 1024))


def _code(kind: str, code: str):
    """The value set's concept (its English display), or the code alone: the use-case refuses it by field."""
    concept = value_sets.concept(kind, code)
    return concept.code if concept else Code(None, code or "-")
