"""Which messages the bridge takes, the structure each trigger has, and hl7apy as reference parser.

MSH-9.3 in the wild is often wrong (ADT_A40, MDM_T10): the structure is decided here from MSH-9.1/9.2,
never taken from the message. hl7apy yields a flat, unvalidated message for a structure it does not
know, so the mapping comes first.
"""

from __future__ import annotations

from adapters.infomed.hl7v2.errors import UNSUPPORTED_EVENT, UNSUPPORTED_MESSAGE_TYPE, CannotProcess

# (MSH-9.1, MSH-9.2) → the HL7 v2.5+ message structure
STRUCTURES = {
    ("MDM", "T02"): "MDM_T02",
    ("MDM", "T06"): "MDM_T02",
    ("MDM", "T10"): "MDM_T02",
    ("ORU", "R01"): "ORU_R01",
    ("ADT", "A08"): "ADT_A01",
    ("ADT", "A40"): "ADT_A39",
}
KNOWN_CODES = frozenset(code for code, _ in STRUCTURES)


def structure_for(code: str, trigger: str) -> str:
    """The structure of a supported message; AR (unsupported type / event) otherwise."""
    structure = STRUCTURES.get((code, trigger))
    if structure is None:
        if code not in KNOWN_CODES:
            raise CannotProcess(f"message type {code}^{trigger} is not supported by this gateway",
                                code=UNSUPPORTED_MESSAGE_TYPE, segment="MSH", field=9, component=1)
        raise CannotProcess(f"event {code}^{trigger} is not supported by this gateway (supported: "
                            + ", ".join(f"{c}^{t}" for c, t in STRUCTURES) + ")",
                            code=UNSUPPORTED_EVENT, segment="MSH", field=9, component=2)
    return structure


def parse_with_hl7apy(text: str, *, code: str, trigger: str):
    """hl7apy's reading of a normalised message (TOLERANT: STRICT refuses any ED over 199 characters),
    with MSH-9.3 replaced by the structure the trigger has. Costly (milliseconds a segment): for checks
    and tests, not the hot path."""
    from hl7apy.consts import VALIDATION_LEVEL
    from hl7apy.parser import parse_message

    structure = structure_for(code, trigger)
    header, _, rest = text.partition("\r")
    separator = header[3]
    fields = header.split(separator)
    components = fields[8].split(header[4]) if len(fields) > 8 else [code, trigger]
    components = (components + ["", "", ""])[:3]
    components[2] = structure
    fields[8] = header[4].join(components)
    return parse_message(separator.join(fields) + "\r" + rest, validation_level=VALIDATION_LEVEL.TOLERANT,
                         find_groups=False)
