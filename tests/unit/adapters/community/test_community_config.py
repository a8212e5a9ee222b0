"""The EPR_COMMUNITIES file: both kinds of community read, and every way it can be wrong is one line
naming the community and the problem (the CLI prints it and exits 2)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from adapters.community.config import (
    Community,
    CommunityConfigError,
    MhdCommunity,
    TechnicalUser,
    TlsFiles,
    load_communities,
)
from gateway.pki import ensure_dev_pki
from unit.adapters.community.community_fixtures import MPI_OID, PRINCIPAL_GLN, TCU_OID, community_entry, make_pki


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    return make_pki(tmp_path_factory.mktemp("pki"))


def write(tmp_path: Path, data) -> Path:
    path = tmp_path / "communities.json"
    path.write_text(data if isinstance(data, str) else json.dumps(data), encoding="utf-8")
    return path


def mhd_entry(pki) -> dict:
    return {"id": "canton-ge", "mhd_url": "https://127.0.0.1:8443/fhir", "token_url": "https://127.0.0.1:8443/token",
            "tls": {"ca": str(pki.ca_cert), "client_cert": str(pki.client_cert), "client_key": str(pki.client_key)},
            "client_id": "valais-gateway"}


def test_both_kinds_are_read_whole(tmp_path, pki):
    soap, mhd = load_communities(write(tmp_path, [community_entry(pki, atna="atna.cara.ch:6514"), mhd_entry(pki)]))
    assert soap == Community(
        id="cara-int", home_community_id="urn:oid:2.16.756.5.30.1.177",
        repository_unique_id="2.16.756.5.30.1.177.2.2.1.1.2",
        iti41_url="https://127.0.0.1:9/Repository/services/RepositoryService",
        iti40_sts_url="https://127.0.0.1:9/STS/services/SecurityTokenService",
        iti45_pix_url="https://127.0.0.1:9/PIXPDQ/services/PIXPDQV3ManagerService",
        pix_assigning_authority=MPI_OID, atna_host="atna.cara.ch", atna_port=6514,
        tls=TlsFiles(pki.ca_cert, pki.client_cert, pki.client_key),
        technical_user=TechnicalUser(TCU_OID, pki.tcu_key, pki.tcu_cert, PRINCIPAL_GLN, "Dr. Anna Verantwortlich"),
        source_id="2.16.756.5.30.1.145.20.1", pix_receiver_oid=MPI_OID, timeout_seconds=30.0)
    assert soap.atna_address == "atna.cara.ch:6514"
    assert mhd == MhdCommunity("canton-ge", "https://127.0.0.1:8443/fhir", "https://127.0.0.1:8443/token",
                               TlsFiles(pki.ca_cert, pki.client_cert, pki.client_key), "valais-gateway", None, 30.0)


def test_optional_keys_and_relative_paths(tmp_path, pki):
    entry = community_entry(pki, pix_receiver_oid="2.16.756.5.30.1.177.2.2.1.1.3", timeout_seconds=5,
                            atna="[::1]:6514")
    for section in ("tls", "technical_user"):
        entry[section] = {k: (os.path.relpath(v, tmp_path) if k in ("ca", "client_cert", "client_key", "key", "cert")
                              else v) for k, v in entry[section].items()}
    (community,) = load_communities(write(tmp_path, [entry]))
    assert (community.pix_receiver_oid, community.timeout_seconds, community.atna_host, community.atna_port) == (
        "2.16.756.5.30.1.177.2.2.1.1.3", 5.0, "::1", 6514)
    assert community.tls.client_key.resolve() == pki.client_key.resolve()


def problem(tmp_path, data) -> str:
    with pytest.raises(CommunityConfigError) as caught:
        load_communities(write(tmp_path, data))
    message = str(caught.value)
    assert "\n" not in message
    return message


def test_the_file_itself(tmp_path, pki):
    with pytest.raises(CommunityConfigError, match=r"no such file \(EPR_COMMUNITIES\)"):
        load_communities(tmp_path / "absent.json")
    unreadable = tmp_path / "folder.json"
    unreadable.mkdir()
    with pytest.raises(CommunityConfigError, match="cannot be read"):
        load_communities(unreadable)
    assert "not JSON" in problem(tmp_path, "[{")
    assert "must be a JSON list of communities, not dict" in problem(tmp_path, community_entry(pki))
    assert "lists no community" in problem(tmp_path, [])
    assert "community[0]: must be a JSON object" in problem(tmp_path, ["cara"])


def without(entry: dict, *keys: str) -> dict:
    return {k: v for k, v in entry.items() if k not in keys}


@pytest.mark.parametrize(("change", "expected"), [
    (lambda e: without(e, "iti41_url", "source_id"), "community[0] (cara-int): community lacks iti41_url, source_id"),
    (lambda e: {**without(e, "iti41_url"), "iti41_ur1": "https://x"}, "community lacks iti41_url; community[0] (cara-int): community has "
                                                "unknown key iti41_ur1"),
    (lambda e: {**without(e, "iti41_url"), "iti41_url": "https://x", "colour": 1, "size": 2},
     "has unknown keys colour, size"),
    (lambda e: {**e, "iti41_url": "http://cara.ch/rep"}, "iti41_url 'http://cara.ch/rep' must be an https:// URL"),
    (lambda e: {**e, "iti40_sts_url": "https://user:pw@cara.ch/sts"}, "iti40_sts_url"),
    (lambda e: {**e, "iti45_pix_url": "https:///nohost"}, "iti45_pix_url 'https:///nohost' must be an https:// URL"),
    (lambda e: {**e, "iti45_pix_url": "https://cara.ch:99999/pix"}, "iti45_pix_url 'https://cara.ch:99999/pix' has "
                                                                    "an invalid port"),
    (lambda e: {**e, "iti41_url": "https://cara.ch/a b"}, "iti41_url 'https://cara.ch/a b'"),
    (lambda e: {**e, "repository_unique_id": "2.16.756.x"}, "repository_unique_id '2.16.756.x' must be an OID"),
    (lambda e: {**e, "pix_assigning_authority": "urn:oid:2.16.756"}, "pix_assigning_authority 'urn:oid:2.16.756' "
                                                                     "must be an OID"),
    (lambda e: {**e, "source_id": "２.16.756"}, "source_id '２.16.756' must be an OID"),
    (lambda e: {**e, "pix_receiver_oid": "3.1"}, "pix_receiver_oid '3.1' must be an OID"),
    (lambda e: {**e, "home_community_id": "2.16.756.5.30.1.177"}, "home_community_id '2.16.756.5.30.1.177' must be "
                                                                  "urn:oid:<OID>"),
    (lambda e: {**e, "atna_address": "atna.cara.ch"}, "atna_address 'atna.cara.ch' must be host:port"),
    (lambda e: {**e, "atna_address": "atna.cara.ch:0"}, "atna_address 'atna.cara.ch:0' must be host:port"),
    (lambda e: {**e, "atna_address": "atna cara:6514"}, "must be host:port"),
    (lambda e: {**e, "timeout_seconds": 0}, "timeout_seconds 0 must be a number of seconds"),
    (lambda e: {**e, "timeout_seconds": True}, "timeout_seconds True must be a number of seconds"),
    (lambda e: {**e, "id": "Cara Int"}, "community[0]: id 'Cara Int' must be 1-64 characters"),
    (lambda e: {**e, "tls": "pki/"}, "tls must be an object {ca, client_cert, client_key}"),
    (lambda e: {**e, "tls": without(e["tls"], "ca")}, "tls lacks ca"),
    (lambda e: {**e, "technical_user": without(e["technical_user"], "principal_gln")}, "technical_user lacks "
                                                                                        "principal_gln"),
    (lambda e: {**e, "technical_user": {**e["technical_user"], "oid": "urn:oid:2.16.756.5.30.1.191.999.10"}},
     "technical_user.oid 'urn:oid:2.16.756.5.30.1.191.999.10' must be an OID"),
    (lambda e: {**e, "technical_user": {**e["technical_user"], "principal_gln": "7601000000003"}},
     "technical_user.principal_gln '7601000000003' is not a GLN"),
    (lambda e: {**e, "technical_user": {**e["technical_user"], "principal_name": " Dr. X"}},
     "technical_user.principal_name must be"),
    (lambda e: {**e, "mhd_url": "https://x/fhir"}, "has both MHD keys (mhd_url, token_url) and SOAP endpoints"),
])
def test_each_problem_is_named(tmp_path, pki, change, expected):
    assert expected in problem(tmp_path, [change(community_entry(pki))])


def test_files_that_cannot_be_read_or_do_not_belong_together(tmp_path, pki):
    entry = community_entry(pki)
    missing = {**entry, "tls": {**entry["tls"], "ca": str(tmp_path / "nope.pem")}}
    assert f"tls.ca '{tmp_path / 'nope.pem'}' cannot be read (No such file or directory)" in problem(tmp_path, [missing])
    swapped = {**entry, "tls": {**entry["tls"], "client_key": str(pki.tcu_key)}}
    assert (f"tls key '{pki.tcu_key}' does not belong to the certificate '{pki.client_cert}'"
            in problem(tmp_path, [swapped]))
    not_a_key = {**entry, "technical_user": {**entry["technical_user"], "key": str(pki.tcu_cert)}}
    assert "technical_user key" in problem(tmp_path, [not_a_key])
    assert "is not an unencrypted PEM private key" in problem(tmp_path, [not_a_key])
    not_a_ca = {**entry, "tls": {**entry["tls"], "ca": str(pki.ca_key)}}
    assert f"tls.ca '{pki.ca_key}' holds no PEM certificate" in problem(tmp_path, [not_a_ca])


def test_the_technical_user_signs_with_an_rsa_key(tmp_path, pki):
    ec = ensure_dev_pki(tmp_path / "ec")  # EC keys: fine for TLS, not for an RSA-SHA256 signature
    entry = community_entry(pki)
    entry["technical_user"] = {**entry["technical_user"], "key": str(ec.client_key), "cert": str(ec.client_cert)}
    assert (f"technical_user key '{ec.client_key}' must be an RSA key (the assertion is signed RSA-SHA256)"
            in problem(tmp_path, [entry]))
    entry = community_entry(pki)
    entry["tls"] = {**entry["tls"], "client_key": str(ec.client_key), "client_cert": str(ec.client_cert)}
    (community,) = load_communities(write(tmp_path, [entry]))
    assert community.tls.client_key == ec.client_key


def test_every_problem_of_every_community_in_one_line(tmp_path, pki):
    first = {**community_entry(pki), "iti41_url": "ftp://x", "source_id": "x"}
    second = {**mhd_entry(pki), "token_url": "http://x"}
    message = problem(tmp_path, [first, second, community_entry(pki)])
    assert message.count("community[0] (cara-int)") == 2 and "community[1] (canton-ge): token_url" in message
    assert "iti41_url 'ftp://x'" in message and "source_id 'x'" in message


def test_two_communities_with_one_id(tmp_path, pki):
    assert "the id 'cara-int' is used twice" in problem(tmp_path, [community_entry(pki), community_entry(pki)])


def test_an_mhd_community_is_checked_as_strictly(tmp_path, pki):
    entry = mhd_entry(pki)
    assert "community lacks token_url" in problem(tmp_path, [without(entry, "token_url")])
    assert "client_id must be a non-empty string" in problem(tmp_path, [{**entry, "client_id": ""}])
    assert "source_id 'x' must be an OID" in problem(tmp_path, [{**entry, "source_id": "x"}])
    assert "has unknown key scope" in problem(tmp_path, [{**entry, "scope": "ITI-65"}])
    assert "has both MHD keys" in problem(tmp_path, [{**entry, "pix_assigning_authority": "1.2"}])
