"""Where the stub reads the recorded messages and the XDS.b schemas (in place, never copied)."""

from __future__ import annotations

import functools
from pathlib import Path

from lxml import etree

from official_examples import FIXTURES, require_examples

XDS = FIXTURES / "xds"
SAMPLES = XDS / "epr-by-example" / "samples"
XUA_SAMPLES = XDS / "epr-by-example" / "XUA_samples"
IKIT_REQUESTS = XDS / "cara-ikit" / "requests"
SCHEMA = XDS / "schema"


def require_xds_fixtures() -> Path:
    """The XDS fixtures folder, else skip (or fail where the examples are expected)."""
    require_examples(SCHEMA / "IHE", ("IHEXDSB.xsd",))
    require_examples(SAMPLES, ("ITI-41_request_raw.xml", "ITI-41_response_raw.xml", "ITI-45_request_raw.xml",
                               "ITI-45_response_raw.xml", "iti-41-log.xml", "iti-45-log.xml"))
    require_examples(XUA_SAMPLES, ("3_Get_X-User_Assertion_Request-Technical_User.xml",
                                   "3_Get_X-User_Assertion_Response-Technical_User.xml"))
    return XDS


# rim.xsd imports the XDS.b namespace from xcf.xsd (xds:Document inside ExtrinsicObject) while
# IHEXDSB.xsd defines the rest of it: libxml2 reads one schema document per namespace through
# imports, so both are included into one in-memory document of that namespace.
_XDS_B_WRAPPER = b"""<xs:schema xmlns:xs="http://www.w3.org/2001/XMLSchema" targetNamespace="urn:ihe:iti:xds-b:2007">
<xs:include schemaLocation="IHEXDSB.xsd"/><xs:include schemaLocation="xcf.xsd"/></xs:schema>"""


@functools.cache
def xds_schema() -> etree.XMLSchema:
    """IHE XDS.b with ebRS 3.0 (lcm/rim/rs/query imported by relative path from the fixtures)."""
    wrapper = etree.fromstring(_XDS_B_WRAPPER, base_url=(SCHEMA / "IHE" / "wrapper.xsd").as_uri())
    return etree.XMLSchema(wrapper)


def sample(name: str) -> bytes:
    return (SAMPLES / name).read_bytes()
