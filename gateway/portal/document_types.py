"""What the page calls a document: its type, from the CH EPR value set DocumentEntry.typeCode
(urn:oid:2.16.756.5.30.1.127.3.10.1.27, ch-term), each code a catalogue message translated in every
language of the page.

Why the whole value set and not the sender's display text: the display is the sender's words in the
sender's language (often English, "Clinical consultation report"), shown as is on a French page; the
code is what the CH EPR fixes, so the page names a type by its code. A code outside the value set
(a sender's error) is shown as "Other document", the sender's words beside it on the details page.
"""

from __future__ import annotations

from gateway.pages.i18n import N_

SNOMED = "http://snomed.info/sct"
SWISS_SNOMED = "urn:oid:2.16.756.5.30.1.127.3.4"  # the Swiss extension's codes in the value set
# (system, code) → the catalogue message naming the type.
TYPES = {
    (SNOMED, "373942005"): N_("Discharge summary"),
    (SNOMED, "4241000179101"): N_("Laboratory report"),
    (SNOMED, "4201000179104"): N_("Imaging report"),
    (SNOMED, "371530004"): N_("Specialist consultation report"),
    (SNOMED, "371526002"): N_("Operative report"),
    (SNOMED, "371528001"): N_("Pathology report"),
    (SNOMED, "371529009"): N_("History and physical report"),
    (SNOMED, "371532007"): N_("Progress report"),
    (SNOMED, "371535009"): N_("Transfer summary report"),
    (SNOMED, "445300006"): N_("Emergency department record"),
    (SNOMED, "761938008"): N_("Medical prescription"),
    (SNOMED, "765492005"): N_("Non-drug prescription"),
    (SNOMED, "721912009"): N_("Medication list"),
    (SNOMED, "41000179103"): N_("Immunization record"),
    (SNOMED, "722446000"): N_("Allergy record"),
    (SNOMED, "772786005"): N_("Medical certificate"),
    (SNOMED, "737427001"): N_("Treatment plan"),
    (SNOMED, "773130005"): N_("Nursing care plan"),
    (SNOMED, "736055001"): N_("Rehabilitation plan"),
    (SNOMED, "721965002"): N_("Laboratory order"),
    (SNOMED, "721966001"): N_("Pathology order"),
    (SWISS_SNOMED, "2161000195103"): N_("Imaging order"),
    (SNOMED, "900000000000471006"): N_("Image"),
    (SNOMED, "445418005"): N_("Document outside a treatment"),
    (SNOMED, "419891008"): N_("Unspecified document"),
}
OTHER = N_("Other document")
BY_CODE = {code: label for (_system, code), label in TYPES.items()}


def type_label(system: str | None, code: str | None) -> str | None:
    """The catalogue message of a type code of the value set, or None for a code outside it."""
    if (system, code) in TYPES:
        return TYPES[(system, code)]
    return BY_CODE.get(code or "") if system in (None, "") else None


def filter_choices() -> dict[str, str]:
    """The types a patient can filter by: value (the code) → catalogue message."""
    return {code: label for (_system, code), label in TYPES.items()}


def search_token(code: str) -> str | None:
    """The ITI-67 `type` token of a code the filter offers, or None."""
    return next((f"{system}|{c}" for system, c in TYPES if c == code), None)
