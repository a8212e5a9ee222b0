"""Writes adapters/cara/ch_value_sets.json from a checkout of the CH terminology (github.com/hl7ch/ch-term):
the DocumentEntry value sets the professionals' page offers as pickers (class, type, facility type,
practice setting), each concept with its SNOMED CT code and its designations in fr, de, it and en.

    python scripts/ch_value_sets.py /path/to/ch-term > adapters/cara/ch_value_sets.json

Only what a picker needs is kept (code, system, the English display, four designations); the value sets'
copyright notices (SNOMED CT affiliate licence) are carried in the file's `copyright`."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

from lxml import etree

FHIR = {"f": "http://hl7.org/fhir"}
SETS = {"class": "DocumentEntry.classCode", "type": "DocumentEntry.typeCode",
        "facility": "DocumentEntry.healthcareFacilityTypeCode", "setting": "DocumentEntry.practiceSettingCode"}
LANGUAGES = {"fr-CH": "fr", "de-CH": "de", "it-CH": "it", "en-US": "en"}


def concepts(path: Path) -> tuple[str, str, list[dict]]:
    root = etree.parse(str(path)).getroot()
    url = root.find("f:url", FHIR).get("value")
    version = root.find("f:version", FHIR).get("value")
    found = []
    for include in root.iterfind("f:compose/f:include", FHIR):
        system = include.find("f:system", FHIR).get("value")
        for concept in include.iterfind("f:concept", FHIR):
            names = {LANGUAGES[d.find("f:language", FHIR).get("value")]: d.find("f:value", FHIR).get("value").strip()
                     for d in concept.iterfind("f:designation", FHIR)
                     if d.find("f:language", FHIR).get("value") in LANGUAGES}
            display = re.sub(r" \([a-z ]+\)$", "", concept.find("f:display", FHIR).get("value"))  # the semantic tag
            found.append({"system": system, "code": concept.find("f:code", FHIR).get("value"), "display": display,
                          "names": {lang: names.get(lang) or display for lang in LANGUAGES.values()}})
    return url, version, found


def main(checkout: Path) -> None:
    commit = subprocess.run(["git", "-C", str(checkout), "rev-parse", "HEAD"], capture_output=True, text=True).stdout
    out = {"source": f"https://github.com/hl7ch/ch-term {commit.strip() or '(not a git checkout)'}",
           "copyright": "Includes content from SNOMED Clinical Terms (SNOMED CT), copyright of the International "
                        "Health Terminology Standards Development Organisation (IHTSDO / SNOMED International).",
           "sets": {}}
    for name, file in SETS.items():
        url, version, found = concepts(checkout / "input" / "resources" / "valueset" / f"{file}.xml")
        out["sets"][name] = {"url": url, "version": version, "concepts": found}
    json.dump(out, sys.stdout, ensure_ascii=False, indent=1)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
