"""The one role table: which EPR roles may take part in what, beside the policy decision point.

The roles are the CH EPR subject roles an IUA token carries (urn:oid:2.16.756.5.30.1.127.3.10.6).
What a policy *grants* (read a document at a level, write, manage policies) is decided by `pdp.py`
from the patient's policies; what is here are the rules no policy changes — who may feed or look up
identities, merge, review, delegate, use which purpose of use. Every module that allows or refuses by
role takes its set from here (`tests/unit/consent/test_roles.py` finds any other list of roles in the
product), so a rule reads the same at the door, in the use-cases and in the decision point.
"""

from __future__ import annotations

PATIENT = "PAT"
REPRESENTATIVE = "REP"
PROFESSIONAL = "HCP"
ASSISTANT = "ASS"
TECHNICAL_USER = "TCU"
DOCUMENT_ADMINISTRATOR = "DADM"
POLICY_ADMINISTRATOR = "PADM"

ROLES = frozenset({PATIENT, REPRESENTATIVE, PROFESSIONAL, ASSISTANT, TECHNICAL_USER, DOCUMENT_ADMINISTRATOR,
                   POLICY_ADMINISTRATOR})
# The patient and whoever represents them (a 303 in force): the patient's page, their own record.
PATIENT_SIDE = frozenset({PATIENT, REPRESENTATIVE})
# Persons identified by their GLN; the only ones who may claim an emergency (purpose EMER).
PROFESSIONALS = frozenset({PROFESSIONAL, ASSISTANT})
EMERGENCY_USERS = PROFESSIONALS
# Roles that act for a responsible professional (the token's ch_delegation principal, required).
DELEGATING = frozenset({ASSISTANT, TECHNICAL_USER})
# Roles the decision point judges by the professional rules (grants, exclusion list, provide level):
# they author documents for a responsible professional.
PROFESSIONAL_AUTHORS = PROFESSIONALS | DELEGATING
# Identity exchanges (ITI-104 feed; PIXm, PDQm, $match): systems and staff, never the patient side.
IDENTITY_FEEDERS = ROLES - PATIENT_SIDE
IDENTITY_READERS = ROLES - PATIENT_SIDE
# Merging and unmerging patients ($merge, ADT^A40): the administrators and the feeding systems.
MERGERS = frozenset({DOCUMENT_ADMINISTRATOR, POLICY_ADMINISTRATOR, TECHNICAL_USER})
# Resolving identity reviews (/admin/identity-reviews): the administrators only.
REVIEWERS = frozenset({DOCUMENT_ADMINISTRATOR, POLICY_ADMINISTRATOR})

# Purposes of use reserved to technical users (and the only ones they may use).
TECHNICAL_PURPOSES = frozenset({"AUTO", "DICOM_AUTO"})
