"""TokenVerifier with real signed tokens: every role becomes the expected Principal; every forgery,
expiry and EPR-rule violation is refused with its precise reason."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from cryptography.hazmat.primitives import serialization
from joserfc import jwt
from joserfc.jwk import ECKey, OKPKey, RSAKey

from consent.principal import Group, Principal
from gateway.auth.dev_issuer import JWKS_FILE, KEY_FILE, ensure_dev_issuer, mint_token
from gateway.auth.errors import AccessRefused, AuthenticationFailed
from gateway.auth.issuers import TrustedIssuers
from gateway.auth.iua import REVERIFY_SECONDS, TokenVerifier, gln_is_valid

ISSUER = "https://127.0.0.1:8443/dev-issuer"
AUDIENCE = "https://127.0.0.1:8443/fhir"
NOW = 1_800_000_000
JTI = "0b8e4c2a-5d1f-4f3e-9a77-3c1f0e2d4b61"
SPID = "761337610411353650"
HCP_GLN = "7601000000002"
ASS_GLN = "7601000000019"
OTHER_GLN = "7601080000015"
BAD_GLN = "7601000000001"
GROUP = "urn:oid:2.16.756.5.30.1.999.3.1"
COMMUNITY = "urn:oid:2.16.756.5.30.1.999.1"
PERSON_ID = f"{SPID}^^^&2.16.756.5.30.1.127.3.10.3&ISO"
GLN_QUALIFIER = "urn:gs1:gln"
SPID_QUALIFIER = "urn:e-health-suisse:2015:epr-spid"
REP_QUALIFIER = "urn:e-health-suisse:representative-id"


@pytest.fixture
def data_dir(tmp_path) -> Path:
    ensure_dev_issuer(tmp_path, ISSUER)
    return tmp_path


@pytest.fixture
def verifier(data_dir) -> TokenVerifier:
    issuers = TrustedIssuers.load(data_dir / "auth" / "trusted-issuers.json")
    return TokenVerifier(issuers=issuers, audience=AUDIENCE, clock_skew_seconds=60, now=lambda: NOW)


def mint(data_dir: Path, **claims) -> str:
    defaults = dict(issuer_url=ISSUER, audience=AUDIENCE, now=NOW, extra_claims={"jti": JTI})
    return mint_token(data_dir=data_dir, **{**defaults, **claims})


def b64(value: bytes) -> str:
    return base64.urlsafe_b64encode(value).rstrip(b"=").decode()


def b64_json(value: dict) -> str:
    return b64(json.dumps(value).encode())


def payload_of(token: str) -> dict:
    segment = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))


def dev_kid(data_dir: Path) -> str:
    return json.loads((data_dir / "auth" / JWKS_FILE).read_text())["keys"][0]["kid"]


def add_to_jwks(data_dir: Path, key, kid: str) -> None:
    path = data_dir / "auth" / JWKS_FILE
    jwks = json.loads(path.read_text())
    jwks["keys"].append({**key.as_dict(private=False), "kid": kid})
    path.write_text(json.dumps(jwks))


def principal(**fields) -> Principal:
    return Principal(**{"token_id": JTI, "issuer": ISSUER, "client_id": "epr-gateway-dev", **fields})


# --- every role ----------------------------------------------------------------------------------

ROLE_CASES = {
    "PAT": (dict(role="PAT", spid=SPID, name="Anna Muster"),
            principal(role="PAT", user_id=SPID, user_id_qualifier=SPID_QUALIFIER, name="Anna Muster",
                      patient_spid=SPID)),
    "REP": (dict(role="REP", user_id="rep-4711", name="Hans Muster", spid=SPID),
            principal(role="REP", user_id="rep-4711", user_id_qualifier=REP_QUALIFIER, name="Hans Muster",
                      patient_spid=SPID)),
    "HCP": (dict(role="HCP", gln=HCP_GLN, name="Dr. Luc Favre", spid=SPID, organisation="Hôpital du Valais",
                 organisation_id="urn:oid:2.16.756.5.30.1.999.9", home_community_id=COMMUNITY,
                 groups=(Group(id=GROUP, name="Cardiologie"), "urn:oid:2.16.756.5.30.1.999.3.2")),
            principal(role="HCP", user_id=HCP_GLN, user_id_qualifier=GLN_QUALIFIER, name="Dr. Luc Favre",
                      organisation="Hôpital du Valais", organisation_id="urn:oid:2.16.756.5.30.1.999.9",
                      home_community_id=COMMUNITY, patient_spid=SPID,
                      groups=(Group(id=GROUP, name="Cardiologie"), Group(id="urn:oid:2.16.756.5.30.1.999.3.2")))),
    "HCP-EMER": (dict(role="HCP", gln=HCP_GLN, name="Dr. Luc Favre", purpose="EMER"),
                 principal(role="HCP", user_id=HCP_GLN, user_id_qualifier=GLN_QUALIFIER, name="Dr. Luc Favre",
                           purpose_of_use="EMER")),
    "ASS": (dict(role="ASS", gln=ASS_GLN, name="Marie Rey", principal_gln=HCP_GLN, principal_name="Dr. Luc Favre"),
            principal(role="ASS", user_id=ASS_GLN, user_id_qualifier=GLN_QUALIFIER, name="Marie Rey",
                      acting_for=HCP_GLN, acting_for_name="Dr. Luc Favre")),
    "ASS-EMER": (dict(role="ASS", gln=ASS_GLN, principal_gln=HCP_GLN, purpose="EMER"),
                 principal(role="ASS", user_id=ASS_GLN, user_id_qualifier=GLN_QUALIFIER, acting_for=HCP_GLN,
                           purpose_of_use="EMER")),
    "TCU": (dict(role="TCU", user_id="infomed-migration", name="Migration", principal_gln=HCP_GLN),
            principal(role="TCU", user_id="infomed-migration", name="Migration", purpose_of_use="AUTO",
                      acting_for=HCP_GLN)),
    "TCU-DICOM": (dict(role="TCU", user_id="pacs-bridge", principal_gln=HCP_GLN, purpose="DICOM_AUTO"),
                  principal(role="TCU", user_id="pacs-bridge", purpose_of_use="DICOM_AUTO", acting_for=HCP_GLN)),
    "DADM": (dict(role="DADM", user_id="dadm-1", name="Document Admin"),
             principal(role="DADM", user_id="dadm-1", name="Document Admin")),
    "PADM": (dict(role="PADM", user_id="padm-1", name="Policy Admin"),
             principal(role="PADM", user_id="padm-1", name="Policy Admin")),
}


@pytest.mark.parametrize("case", ROLE_CASES, ids=list(ROLE_CASES))
def test_each_role_becomes_its_principal(data_dir, verifier, case):
    claims, expected = ROLE_CASES[case]
    assert verifier.verify(mint(data_dir, **claims)) == expected


def test_audience_may_be_a_list(data_dir, verifier):
    token = mint(data_dir, role="DADM", user_id="dadm-1",
                 extra_claims={"jti": JTI, "aud": ["https://other.example/fhir", AUDIENCE]})
    assert verifier.verify(token) == principal(role="DADM", user_id="dadm-1")


def test_clock_skew_is_tolerated(data_dir, verifier):
    token = mint(data_dir, role="DADM", user_id="dadm-1", now=NOW - 3600 - 59, ttl=3600)
    assert verifier.verify(token) == principal(role="DADM", user_id="dadm-1")


@pytest.mark.filterwarnings("ignore:EdDSA is deprecated")  # signing here; the verifier accepts EdDSA on purpose
@pytest.mark.parametrize(("key", "alg"), [(RSAKey.generate_key(2048), "RS256"),
                                          (OKPKey.generate_key("Ed25519"), "EdDSA")], ids=["RS256", "EdDSA"])
def test_other_allowed_algorithms_verify(data_dir, verifier, key, alg):
    add_to_jwks(data_dir, key, kid="other")
    claims = payload_of(mint(data_dir, role="DADM", user_id="dadm-1"))
    token = jwt.encode({"alg": alg, "kid": "other"}, claims, key, algorithms=[alg])
    assert verifier.verify(token) == principal(role="DADM", user_id="dadm-1")


def test_new_key_in_rotated_jwks_file_is_accepted(data_dir, verifier):
    verifier.verify(mint(data_dir, role="DADM", user_id="dadm-1"))  # keys loaded before the rotation
    new_key = ECKey.generate_key("P-256")
    add_to_jwks(data_dir, new_key, kid="2026-rotation")
    claims = payload_of(mint(data_dir, role="DADM", user_id="dadm-1"))
    token = jwt.encode({"alg": "ES256", "kid": "2026-rotation"}, claims, new_key, algorithms=["ES256"])
    assert verifier.verify(token) == principal(role="DADM", user_id="dadm-1")


def test_key_withdrawn_from_jwks_file_is_refused_once_the_verified_token_is_due_again(data_dir):
    clock = [NOW]
    verifier = TokenVerifier(issuers=TrustedIssuers.load(data_dir / "auth" / "trusted-issuers.json"),
                             audience=AUDIENCE, now=lambda: clock[0])
    token = mint(data_dir, role="DADM", user_id="dadm-1", ttl=3600)
    verifier.verify(token)
    (data_dir / "auth" / JWKS_FILE).write_text(json.dumps({"keys": [
        {**ECKey.generate_key("P-256").as_dict(private=False), "kid": "replacement"}]}))
    served_from_cache = verifier.verify(token)
    clock[0] = NOW + REVERIFY_SECONDS
    with pytest.raises(AuthenticationFailed) as refused:
        verifier.verify(token)
    assert served_from_cache.user_id == "dadm-1"
    assert refused.value.reason == "unknown signing key (kid)"


def test_a_cached_token_still_expires(data_dir):
    clock = [NOW]
    verifier = TokenVerifier(issuers=TrustedIssuers.load(data_dir / "auth" / "trusted-issuers.json"),
                             audience=AUDIENCE, clock_skew_seconds=60, now=lambda: clock[0])
    token = mint(data_dir, role="DADM", user_id="dadm-1", ttl=100)
    verifier.verify(token)
    clock[0] = NOW + 100 + 60
    with pytest.raises(AuthenticationFailed) as refused:
        verifier.verify(token)
    assert refused.value.reason == "token expired"


def test_gln_check_digit():
    assert [gln_is_valid(g) for g in (HCP_GLN, ASS_GLN, OTHER_GLN, BAD_GLN, "760100000000", "760100000000a",
                                      "７６０１０００００００００２")] == [True, True, True, False, False, False, False]


# --- refusals ------------------------------------------------------------------------------------

def refusal(verifier: TokenVerifier, token: str, kind: type[Exception] = AuthenticationFailed) -> str:
    with pytest.raises(kind) as refused:
        verifier.verify(token)
    return refused.value.reason


@pytest.mark.parametrize("token", [
    "", "abc", "a.b", "a.b.c.d.e", "!!!.e30.c2ln", b64(b"not json") + ".e30.c2ln",
    b64_json({"alg": "ES256"}) + "." + b64(b"\xff\xfe") + ".c2ln", b64(b"[1]") + ".e30.c2ln",
    "e30.e30.c2ln.x",
    b64(b'{"alg":"ES256","alg":"none"}') + ".e30.c2ln",
], ids=["empty", "one-part", "two-parts", "jwe-like", "bad-base64", "header-not-json", "payload-not-utf8",
        "header-array", "four-parts", "duplicate-alg"])
def test_malformed_token(verifier, token):
    assert refusal(verifier, token) == "malformed token"


def test_expired(data_dir, verifier):
    assert refusal(verifier, mint(data_dir, role="HCP", gln=HCP_GLN, now=NOW - 3660, ttl=3600)) == "token expired"


def test_not_yet_valid(data_dir, verifier):
    assert refusal(verifier, mint(data_dir, role="HCP", gln=HCP_GLN, now=NOW + 3600)) == "token not yet valid"


def test_issued_in_the_future(data_dir, verifier):
    token = mint(data_dir, role="HCP", gln=HCP_GLN, extra_claims={"jti": JTI, "iat": NOW + 120})
    assert refusal(verifier, token) == "token issued in the future (iat)"


def test_wrong_audience(data_dir, verifier):
    token = mint(data_dir, role="HCP", gln=HCP_GLN, audience="https://other-community.example/fhir")
    assert refusal(verifier, token) == "wrong audience"


def test_unknown_issuer(data_dir, verifier):
    token = mint(data_dir, role="HCP", gln=HCP_GLN, issuer_url="https://idp.attacker.example")
    assert refusal(verifier, token) == "unknown issuer"


def test_unknown_kid(data_dir, verifier):
    claims = payload_of(mint(data_dir, role="HCP", gln=HCP_GLN))
    token = jwt.encode({"alg": "ES256", "kid": "not-on-the-list"}, claims, ECKey.generate_key("P-256"),
                       algorithms=["ES256"])
    assert refusal(verifier, token) == "unknown signing key (kid)"


def test_known_kid_signed_by_another_key(data_dir, verifier):
    claims = payload_of(mint(data_dir, role="HCP", gln=HCP_GLN))
    token = jwt.encode({"alg": "ES256", "kid": dev_kid(data_dir)}, claims, ECKey.generate_key("P-256"),
                       algorithms=["ES256"])
    assert refusal(verifier, token) == "signature does not verify"


def test_alg_none(data_dir, verifier):
    claims = payload_of(mint(data_dir, role="HCP", gln=HCP_GLN))
    token = f"{b64_json({'alg': 'none', 'typ': 'JWT', 'kid': dev_kid(data_dir)})}.{b64_json(claims)}."
    assert refusal(verifier, token) == "unsigned token (alg none) not accepted"


def test_hs256_signed_with_the_public_key(data_dir, verifier):
    public_pem = ECKey.import_key((data_dir / "auth" / KEY_FILE).read_bytes()).public_key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    claims = payload_of(mint(data_dir, role="HCP", gln=HCP_GLN))
    signing_input = f"{b64_json({'alg': 'HS256', 'typ': 'JWT', 'kid': dev_kid(data_dir)})}.{b64_json(claims)}"
    signature = b64(hmac.new(public_pem, signing_input.encode(), hashlib.sha256).digest())
    assert refusal(verifier, f"{signing_input}.{signature}") == "algorithm HS256 not accepted"


def test_es256_header_with_an_rsa_key(data_dir, verifier):
    add_to_jwks(data_dir, RSAKey.generate_key(2048), kid="rsa")
    claims = payload_of(mint(data_dir, role="HCP", gln=HCP_GLN))
    token = jwt.encode({"alg": "ES256", "kid": "rsa"}, claims, ECKey.generate_key("P-256"), algorithms=["ES256"])
    assert refusal(verifier, token) == "signing key type does not match algorithm"


def test_tampered_payload(data_dir, verifier):
    token = mint(data_dir, role="HCP", gln=HCP_GLN)
    header, _, signature = token.split(".")
    claims = payload_of(token)
    claims["extensions"]["ch_epr"]["user_id"] = OTHER_GLN
    assert refusal(verifier, f"{header}.{b64_json(claims)}.{signature}") == "signature does not verify"


def test_missing_kid(data_dir, verifier):
    key = ECKey.import_key((data_dir / "auth" / KEY_FILE).read_bytes())
    claims = payload_of(mint(data_dir, role="HCP", gln=HCP_GLN))
    token = jwt.encode({"alg": "ES256"}, claims, key, algorithms=["ES256"])
    assert refusal(verifier, token) == "missing key id (kid) in token header"


CLAIM_CASES = {
    "bad GLN check digit": (dict(role="HCP", gln=BAD_GLN),
                            "claim extensions.ch_epr.user_id is not a valid GLN (13 digits, GS1 check digit)"),
    "ASS without principal_id": (dict(role="ASS", gln=ASS_GLN),
                                 "missing claim extensions.ch_delegation.principal_id (required for ASS)"),
    "TCU without principal_id": (dict(role="TCU", user_id="infomed-migration"),
                                 "missing claim extensions.ch_delegation.principal_id (required for TCU)"),
    "ASS principal_id bad check digit": (
        dict(role="ASS", gln=ASS_GLN, principal_gln=BAD_GLN),
        "claim extensions.ch_delegation.principal_id is not a valid GLN (13 digits, GS1 check digit)"),
    "PAT SPID too short": (dict(role="PAT", spid="76133761041135365"),
                           "claim extensions.ch_epr.user_id is not an EPR-SPID (18 digits)"),
    "missing jti": (dict(role="HCP", gln=HCP_GLN, extra_claims={"jti": None}), "missing claim jti"),
    "missing exp": (dict(role="HCP", gln=HCP_GLN, extra_claims={"jti": JTI, "exp": None}), "missing claim exp"),
    "missing aud": (dict(role="HCP", gln=HCP_GLN, extra_claims={"jti": JTI, "aud": None}), "missing claim aud"),
    "missing subject_role": (
        dict(role="HCP", gln=HCP_GLN, extra_claims={"jti": JTI, "extensions": {"ihe_iua": {"subject_role": None}}}),
        "missing claim extensions.ihe_iua.subject_role"),
    "missing purpose_of_use": (
        dict(role="HCP", gln=HCP_GLN, extra_claims={"jti": JTI, "extensions": {"ihe_iua": {"purpose_of_use": None}}}),
        "missing claim extensions.ihe_iua.purpose_of_use"),
    "role from another system": (
        dict(role="HCP", gln=HCP_GLN, extra_claims={"jti": JTI, "extensions": {"ihe_iua": {"subject_role": {
            "system": "urn:uuid:2.16.756.5.30.1.127.3.10.6", "code": "HCP"}}}}),
        "claim extensions.ihe_iua.subject_role.system must be urn:oid:2.16.756.5.30.1.127.3.10.6"),
    "unknown role code": (
        dict(role="HCP", gln=HCP_GLN, extra_claims={"jti": JTI, "extensions": {"ihe_iua": {"subject_role": {
            "code": "ROOT"}}}}),
        "claim extensions.ihe_iua.subject_role.code must be one of ASS, DADM, HCP, PADM, PAT, REP, TCU"),
    "missing user_id": (
        dict(role="DADM", user_id="dadm-1", extra_claims={"jti": JTI, "extensions": {"ch_epr": {"user_id": None}}}),
        "missing claim extensions.ch_epr.user_id"),
    "HCP with SPID qualifier": (
        dict(role="HCP", gln=HCP_GLN, extra_claims={"jti": JTI, "extensions": {"ch_epr": {
            "user_id_qualifier": SPID_QUALIFIER}}}),
        "claim extensions.ch_epr.user_id_qualifier must be urn:gs1:gln for HCP"),
    "group with urn:uuid OID": (
        dict(role="HCP", gln=HCP_GLN, groups=("urn:uuid:2.16.756.5.30.1.999.3.1",)),
        "claim extensions.ch_group[0].id must be urn:oid:<OID>"),
    "person_id without assigning authority": (
        dict(role="HCP", gln=HCP_GLN, extra_claims={"jti": JTI, "extensions": {"ihe_iua": {"person_id": SPID}}}),
        "claim extensions.ihe_iua.person_id is not an EPR-SPID (<18 digits>^^^&2.16.756.5.30.1.127.3.10.3&ISO)"),
    "PAT bound to another patient": (
        dict(role="PAT", spid=SPID, extra_claims={"jti": JTI, "extensions": {"ihe_iua": {
            "person_id": "761337610499999991^^^&2.16.756.5.30.1.127.3.10.3&ISO"}}}),
        "claim extensions.ihe_iua.person_id differs from the patient's own EPR-SPID (extensions.ch_epr.user_id)"),
}


@pytest.mark.parametrize("case", CLAIM_CASES, ids=list(CLAIM_CASES))
def test_epr_claims_are_checked_strictly(data_dir, verifier, case):
    claims, reason = CLAIM_CASES[case]
    assert refusal(verifier, mint(data_dir, **claims)) == reason


ROLE_RULES = {
    "TCU with NORM": (dict(role="TCU", user_id="infomed-migration", principal_gln=HCP_GLN, purpose="NORM"),
                      "role TCU may only act with purpose of use AUTO or DICOM_AUTO, not NORM"),
    "EMER by PAT": (dict(role="PAT", spid=SPID, purpose="EMER"),
                    "purpose of use EMER is reserved to HCP and ASS, not PAT"),
    "EMER by REP": (dict(role="REP", user_id="rep-4711", purpose="EMER"),
                    "purpose of use EMER is reserved to HCP and ASS, not REP"),
    "AUTO by HCP": (dict(role="HCP", gln=HCP_GLN, purpose="AUTO"), "purpose of use AUTO is reserved to TCU, not HCP"),
    "DICOM_AUTO by DADM": (dict(role="DADM", user_id="dadm-1", purpose="DICOM_AUTO"),
                           "purpose of use DICOM_AUTO is reserved to TCU, not DADM"),
}


@pytest.mark.parametrize("case", ROLE_RULES, ids=list(ROLE_RULES))
def test_role_rules_refuse_at_the_door(data_dir, verifier, case):
    claims, reason = ROLE_RULES[case]
    assert refusal(verifier, mint(data_dir, **claims), AccessRefused) == reason


def test_critical_header_is_refused(data_dir, verifier):
    claims = payload_of(mint(data_dir, role="HCP", gln=HCP_GLN))
    signing_input = f"{b64_json({'alg': 'ES256', 'kid': dev_kid(data_dir), 'crit': ['exp']})}.{b64_json(claims)}"
    token = f"{signing_input}.{b64(b'x' * 64)}"
    assert refusal(verifier, token) == "unsupported critical header"


def test_empty_signature(data_dir, verifier):
    header, payload, _ = mint(data_dir, role="HCP", gln=HCP_GLN).split(".")
    assert refusal(verifier, f"{header}.{payload}.") == "malformed token"


def test_nan_expiry_is_not_json(data_dir, verifier):
    key = ECKey.import_key((data_dir / "auth" / KEY_FILE).read_bytes())
    claims = {**payload_of(mint(data_dir, role="HCP", gln=HCP_GLN)), "exp": float("nan")}
    token = jwt.encode({"alg": "ES256", "kid": dev_kid(data_dir)}, claims, key, algorithms=["ES256"])
    assert refusal(verifier, token) == "malformed token"


# --- whatever arrives, only the two refusals (or a Principal) come out ----------------------------

@pytest.fixture(scope="module")
def shared_dir(tmp_path_factory) -> Path:
    directory = tmp_path_factory.mktemp("issuer")
    ensure_dev_issuer(directory, ISSUER)
    return directory


@pytest.fixture(scope="module")
def shared_verifier(shared_dir) -> TokenVerifier:
    return TokenVerifier(issuers=TrustedIssuers.load(shared_dir / "auth" / "trusted-issuers.json"),
                         audience=AUDIENCE, now=lambda: NOW)


JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
                    lambda children: st.lists(children, max_size=4)
                    | st.dictionaries(st.text(max_size=10), children, max_size=4), max_leaves=12)
HEADERS = st.fixed_dictionaries({"alg": st.sampled_from(["ES256", "RS256", "EdDSA", "none", "HS256", "PS256"]),
                                 "kid": st.text(max_size=8) | JSON}) | st.dictionaries(st.text(max_size=5), JSON)
PAYLOADS = st.fixed_dictionaries({"iss": st.just(ISSUER) | JSON}) | st.dictionaries(st.text(max_size=5), JSON)
ROLE_CLAIMS = st.sampled_from([dict(role=r, user_id="u-1", gln=HCP_GLN, spid=SPID, principal_gln=HCP_GLN)
                               for r in ("PAT", "REP", "HCP", "ASS", "TCU", "DADM", "PADM")])
EXTENSION_GARBAGE = st.fixed_dictionaries({}, optional={
    "ihe_iua": st.dictionaries(st.sampled_from(["subject_role", "purpose_of_use", "person_id", "subject_name"]), JSON),
    "ch_epr": st.dictionaries(st.sampled_from(["user_id", "user_id_qualifier"]), JSON),
    "ch_delegation": JSON, "ch_group": JSON})


def outcome(verifier: TokenVerifier, token: str) -> type:
    try:
        return type(verifier.verify(token))
    except (AuthenticationFailed, AccessRefused) as refused:
        return type(refused)


@settings(max_examples=300, deadline=None)
@given(token=st.text(max_size=200) | st.builds(lambda h, p, s: f"{b64_json(h)}.{b64_json(p)}.{b64(s)}",
                                                   HEADERS, PAYLOADS, st.binary(max_size=80)))
def test_arbitrary_input_is_refused_cleanly(shared_verifier, token):
    assert outcome(shared_verifier, token) is AuthenticationFailed


@settings(max_examples=300, deadline=None)
@given(claims=ROLE_CLAIMS, extensions=EXTENSION_GARBAGE)
def test_arbitrary_signed_claims_never_crash(shared_dir, shared_verifier, claims, extensions):
    token = mint(shared_dir, **claims, extra_claims={"jti": JTI, "extensions": extensions})
    assert outcome(shared_verifier, token) in (Principal, AuthenticationFailed, AccessRefused)
