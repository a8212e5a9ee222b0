"""Demonstration data for the embedded default: one patient and three documents, loaded once
through the same use-cases as any other exchange, by a technical user."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import orjson

from consent.policies import NORMAL, Policy
from consent.principal import Principal
from gateway.exchanges.documents import DocumentExchange
from gateway.exchanges.identity import IdentityExchange
from gateway.exchanges.policies import PolicyChange, PolicyExchange
from gateway.samples import patient_feed, pdf_document, provide_bundle

DEMO_SPID = "761337610430891416"
DEMO_LOCAL_SYSTEM = "urn:oid:2.16.756.5.30.1.999.2.1"
DEMO_GLN = "7601000000002"
DEMO_INSTITUTION = "Cabinet médical Favre, Sion"  # the demo professional's practice (the physicians' page)
DEMO_LOADER = Principal(role="TCU", user_id="epr-gateway-demo-loader", name="Demo loader", purpose_of_use="AUTO",
                        acting_for=DEMO_GLN, acting_for_name="Dr. Demo Favre")


DEMO_ADMIN = Principal(role="PADM", user_id="epr-gateway-demo-admin", name="Demo policy administrator")
DEMO_FAMILY, DEMO_GIVEN = "Demo", "Valérie"


@dataclass(frozen=True)
class DemoView:
    """What a banner token will see of the demonstration documents (a test holds the banner to it)."""
    documents: int  # found by ITI-67 for the demo patient
    says: str


DEMO_VIEWS = {
    "HCP": DemoView(2, "finds 2 of the 3 documents: the patient granted the normal level, the psychiatric "
                       "consultation is restricted"),
    "PAT": DemoView(3, "the patient: finds all 3 documents, her consents and her audit trail"),
    "TCU": DemoView(0, "provides documents on behalf of Dr. Demo Favre; finds none (a technical user never reads)"),
}


def load_demo_data(*, documents: DocumentExchange, identities: IdentityExchange, policies: PolicyExchange,
                   base_url: str) -> bool:
    """Returns False when the demonstration patient is already there (loaded on an earlier start).

    The patient is onboarded (201/202/203) and grants the demo HCP the normal level, so the HCP finds
    two of the three documents; the restricted one needs a restricted grant.
    """
    if identities.patients.pid_for_spid(DEMO_SPID):
        return False
    patient = patient_feed(spid=DEMO_SPID, local_system=DEMO_LOCAL_SYSTEM, local_id="DEMO-0001", family=DEMO_FAMILY,
                           given=DEMO_GIVEN, birth_date="1970-04-12", gender="female")
    identities.register_patient(principal=DEMO_LOADER, identifier_param=f"{DEMO_LOCAL_SYSTEM}|DEMO-0001",
                                body=orjson.dumps(patient))
    # The documents name the MPI's patient (same local id, same name) and each type its own display.
    same_patient = {"local_id": "DEMO-0001", "patient_family": DEMO_FAMILY, "patient_given": DEMO_GIVEN}
    letters = [
        {"title": "Discharge letter", "type_code": "373942005", "type_display": "Discharge summary", **same_patient,
         "content": pdf_document("Discharge letter", ["Hospital of Sion, internal medicine.", "Stay 2026-11-10 to 2026-11-18."])},
        {"title": "Laboratory report", "type_code": "4241000179101", "type_display": "Laboratory report",
         "class_code": "4241000179101", "class_display": "Laboratory report", **same_patient,
         "content": pdf_document("Laboratory report", ["Haemoglobin 135 g/l", "CRP 3 mg/l"])},
        {"title": "Psychiatric consultation", "type_code": "371530004", "type_display": "Clinical consultation report",
         "confidentiality": "restricted", **same_patient,
         "content": pdf_document("Psychiatric consultation", ["Restricted document: visible with a restricted grant."])},
    ]
    policies.onboard(principal=DEMO_ADMIN, spid=DEMO_SPID)
    grant = Policy(policy_set_id=f"urn:uuid:{uuid.uuid4()}", template=301, patient_spid=DEMO_SPID, rule=NORMAL,
                   subject_id=DEMO_GLN)
    patient = Principal(role="PAT", user_id=DEMO_SPID, user_id_qualifier="urn:e-health-suisse:2015:epr-spid",
                        patient_spid=DEMO_SPID, name="Valérie Demo")
    policies.apply(principal=patient, changes=[PolicyChange("POST", grant.policy_set_id, grant)])
    bundle = provide_bundle(spid=DEMO_SPID, author_role=DEMO_LOADER.role, documents=letters)
    documents.provide(principal=DEMO_LOADER, body=orjson.dumps(bundle), base_url=base_url)
    return True
