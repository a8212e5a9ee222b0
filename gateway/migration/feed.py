"""Loading an export's patient feed (patients.ndjson) through the ITI-104 use-case, and opening the
EPR of each patient with a SPID through the PPQ onboarding use-case: the MPI the migration resolves
against is fed exactly as a hospital would feed it."""

from __future__ import annotations

from pathlib import Path

import orjson

from adapters.cara.errors import RecordError
from adapters.cara.vocabulary import SPID_SYSTEM
from consent.principal import Principal
from gateway.auth.errors import AccessRefused

FEEDER = Principal(role="TCU", user_id="infomed-feed", name="Infomed patient feed", purpose_of_use="AUTO")
ONBOARDING = Principal(role="PADM", user_id="infomed-onboarding", name="Infomed onboarding")


def feed_patients(services, file: Path, *, onboard: bool) -> dict[str, int]:
    counts = {"fed": 0, "refused": 0, "onboarded": 0}
    with open(file, "rb") as lines:
        for line in lines:
            if not line.strip():
                continue
            resource = orjson.loads(line)
            local = next(i for i in resource["identifier"] if i["system"] != SPID_SYSTEM)
            spid = next((i["value"] for i in resource["identifier"] if i["system"] == SPID_SYSTEM), None)
            try:
                services.identities.register_patient(principal=FEEDER, identifier_param=f"{local['system']}|{local['value']}",
                                                   body=line)
            except (RecordError, AccessRefused):
                counts["refused"] += 1  # audited by the use-case; the identity review keeps the case
                continue
            counts["fed"] += 1
            if onboard and spid and services.policies.onboard_unless_open(principal=ONBOARDING, spid=spid):
                counts["onboarded"] += 1
    return counts
