"""The real pieces the browser tests drive: the gateway served over TLS on an ephemeral loopback port
(`epr-gateway serve`, embedded default with its demo patient), Debian's headless Chromium through its
chromedriver (nothing downloaded), axe-core injected into each page, and an HCP's FHIR client."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException, WebDriverException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from gateway.auth.dev_issuer import mint_token

SPID_SEARCH = "urn:oid:2.16.756.5.30.1.127.3.10.3|"
OUTPUT = Path(__file__).resolve().parents[2] / "test-output" / "portal"
AXE = Path(os.environ.get("EPR_TEST_AXE", Path(__file__).resolve().parents[2] / ".browser-tools" / "node_modules"
                          / "axe-core" / "axe.min.js"))
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--disable-dev-shm-usage", "--window-size=1100,900"]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class GatewayServer:
    def __init__(self, data_dir: Path, **env: str):
        self.data_dir, self.port = data_dir, free_port()
        self.base = f"https://127.0.0.1:{self.port}"
        environment = {"EPR_DATA_DIR": str(data_dir), "EPR_PORT": str(self.port), "EPR_DEMO_DATA": "true",
                       "EPR_AUDIENCE": f"{self.base}/fhir", "PATH": "/usr/bin:/bin",
                       "PYTHONPATH": os.environ.get("PYTHONPATH", ""), **env}
        self.log = data_dir / "server.log"
        data_dir.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen([sys.executable, "-c", "from gateway.cli import app; app()", "serve"],
                                        env=environment, stdout=self.log.open("wb"), stderr=subprocess.STDOUT)
        self.ca = data_dir / "pki" / "dev-ca-DEVELOPMENT-ONLY.cert.pem"
        self._wait_ready()

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            assert self.process.poll() is None, self.log.read_text()
            if self.ca.exists():
                try:
                    with httpx.Client(verify=str(self.ca), timeout=2) as client:
                        if client.get(f"{self.base}/health/ready").status_code == 200:
                            return
                except httpx.HTTPError:
                    pass
            time.sleep(0.3)
        raise AssertionError("the gateway did not become ready: " + self.log.read_text())

    def spki_pin(self) -> str:
        """The server certificate's public-key pin: Chromium trusts exactly this key, nothing else."""
        cert = x509.load_pem_x509_certificate((self.data_dir / "pki" / "server.cert.pem").read_bytes())
        der = cert.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
        return base64.b64encode(hashlib.sha256(der).digest()).decode()

    def hcp_token(self, gln: str, name: str, purpose: str = "NORM") -> str:
        return mint_token(data_dir=self.data_dir, issuer_url=f"{self.base}/dev-issuer", audience=f"{self.base}/fhir",
                          role="HCP", gln=gln, name=name, purpose=purpose)

    def find_as_hcp(self, spid: str, gln: str, name: str, purpose: str = "NORM") -> dict:
        """ITI-67 over FHIR, as a professional would search."""
        with httpx.Client(verify=str(self.ca), timeout=10) as client:
            answer = client.get(f"{self.base}/fhir/DocumentReference", params={"patient.identifier": SPID_SEARCH + spid},
                                headers={"Authorization": f"Bearer {self.hcp_token(gln, name, purpose)}"})
        assert answer.status_code == 200, answer.text
        return answer.json()

    def retrieve_as_hcp(self, entry_id: str, gln: str, name: str, purpose: str = "NORM") -> int:
        """ITI-68 over FHIR (the document's bytes), as a professional would open it: the status."""
        with httpx.Client(verify=str(self.ca), timeout=10) as client:
            answer = client.get(f"{self.base}/fhir/Binary/{entry_id}",
                                headers={"Authorization": f"Bearer {self.hcp_token(gln, name, purpose)}"})
        return answer.status_code

    def provide_as_hcp(self, bundle: dict, gln: str, name: str) -> list[str]:
        """ITI-65 over FHIR, as a professional's software would send it: the new entries' ids."""
        with httpx.Client(verify=str(self.ca), timeout=10) as client:
            answer = client.post(f"{self.base}/fhir", content=json.dumps(bundle),
                                 headers={"Authorization": f"Bearer {self.hcp_token(gln, name)}",
                                          "Content-Type": "application/fhir+json"})
        assert answer.status_code == 200, answer.text
        return [e["response"]["location"].split("/DocumentReference/")[1].split("/")[0]
                for e in answer.json()["entry"] if "/DocumentReference/" in e["response"]["location"]]

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)


def serving(tmp_path_factory, name: str, directory: dict):
    """A gateway with its own data directory and this EPR_PORTAL_DIRECTORY, stopped after the module."""
    data_dir = tmp_path_factory.mktemp(name) / "data"
    data_dir.mkdir(parents=True)
    path = data_dir / "directory.json"
    path.write_text(json.dumps(directory), encoding="utf-8")
    running = GatewayServer(data_dir, EPR_PORTAL_DIRECTORY=str(path))
    try:
        yield running
    finally:
        running.stop()


class Browser:
    """One headless Chromium with a fresh profile, English first (the tests switch languages themselves)."""

    def __init__(self, server: GatewayServer, output: Path = OUTPUT):
        self.server = server
        self.output = output
        self.profile = Path(tempfile.mkdtemp(prefix="epr-portal-chromium-"))
        options = webdriver.ChromeOptions()
        options.binary_location = "/usr/bin/chromium"
        for flag in CHROMIUM_FLAGS:
            options.add_argument(flag)
        options.add_argument(f"--user-data-dir={self.profile}")
        options.add_argument(f"--ignore-certificate-errors-spki-list={server.spki_pin()}")
        options.add_argument("--lang=en-US")
        options.add_experimental_option("prefs", {"intl.accept_languages": "en-US,en"})
        self.driver = webdriver.Chrome(service=Service(executable_path="/usr/bin/chromedriver"), options=options)
        self.driver.set_page_load_timeout(30)
        self.axe_source = AXE.read_text(encoding="utf-8")
        self.output.mkdir(parents=True, exist_ok=True)

    # -- navigation ------------------------------------------------------------------------------
    def open(self, path: str) -> None:
        self.driver.get(self.server.base + path)

    def click(self, css: str) -> None:
        """Click and wait for the next page (every action of the portal is a full page load).
        Chromium sometimes answers "Node with given id does not belong to the document" for an element
        found while the page is still settling (seen on the first run of a fresh machine); the click
        was not delivered then, so it is found and clicked again, a bounded number of times."""
        for attempt in range(3):
            try:
                old = self.driver.find_element(By.TAG_NAME, "html")
                self.driver.find_element(By.CSS_SELECTOR, css).click()
                break
            except WebDriverException as error:
                settling = isinstance(error, StaleElementReferenceException) or \
                    "does not belong to the document" in str(error)
                if attempt == 2 or not settling:
                    raise
                time.sleep(0.2)
        WebDriverWait(self.driver, 20).until(lambda _driver: _detached(old))
        WebDriverWait(self.driver, 20).until(lambda d: d.execute_script("return document.readyState") == "complete")

    def type(self, css: str, text: str) -> None:
        field = self.driver.find_element(By.CSS_SELECTOR, css)
        field.clear()
        field.send_keys(text)

    def text(self, css: str = "main") -> str:
        return self.driver.find_element(By.CSS_SELECTOR, css).text

    def all_text(self, css: str) -> list[str]:
        return [e.text for e in self.driver.find_elements(By.CSS_SELECTOR, css)]

    def path(self) -> str:
        return self.driver.current_url.removeprefix(self.server.base)

    def focused(self) -> dict:
        """The element that has the keyboard focus: its id, value, what describes it (aria-describedby,
        resolved to the texts) and whether it is inside the window (focus scrolls it into view)."""
        return self.driver.execute_script(
            "const e = document.activeElement; const r = e.getBoundingClientRect();"
            "const ids = (e.getAttribute('aria-describedby') || '').split(' ').filter(Boolean);"
            "return {id: e.id, value: e.value, invalid: e.getAttribute('aria-invalid'),"
            "        described: ids.map(i => document.getElementById(i).innerText.trim()),"
            "        visible: r.top >= 0 && r.bottom <= window.innerHeight};")

    def height(self, css: str) -> float:
        return self.driver.execute_script("return document.querySelector(arguments[0]).getBoundingClientRect()"
                                          ".height;", css)

    # -- checks ----------------------------------------------------------------------------------
    def check_page(self, name: str) -> list[dict]:
        """Screenshot, then axe-core on the page: the serious and critical violations (must be none)."""
        self.driver.save_screenshot(str(self.output / f"{name}.png"))
        self.driver.execute_script(self.axe_source)
        result = self.driver.execute_async_script(
            "const done = arguments[arguments.length - 1];"
            "axe.run(document, {resultTypes: ['violations']}).then(r => done(JSON.stringify(r.violations)))"
            ".catch(e => done(JSON.stringify([{id: 'axe-error', impact: 'critical', help: String(e)}])));")
        violations = json.loads(result)
        return [{"id": v["id"], "impact": v["impact"], "help": v["help"],
                 "nodes": [n.get("target") for n in v.get("nodes", [])][:3]}
                for v in violations if v.get("impact") in ("serious", "critical")]

    def fetch(self, path: str) -> dict:
        """A same-origin request from the page itself (its cookie, its CSP): status and headers."""
        return self.driver.execute_async_script(
            "const done = arguments[arguments.length - 1];"
            "fetch(arguments[0], {credentials: 'same-origin'}).then(async r => {"
            "  const bytes = new Uint8Array(await r.arrayBuffer());"
            "  done({status: r.status, type: r.headers.get('content-type'),"
            "        disposition: r.headers.get('content-disposition'),"
            "        start: String.fromCharCode(...bytes.slice(0, 5))}); })"
            ".catch(e => done({status: -1, type: String(e)}));", path)

    def cookies(self) -> list[dict]:
        return self.driver.get_cookies()

    def quit(self) -> None:
        try:
            self.driver.quit()
        finally:
            shutil.rmtree(self.profile, ignore_errors=True)


def _detached(element) -> bool:
    """The page the element belonged to is gone. Chromium reports a detached node either as stale or
    as "Node with given id does not belong to the document"; both mean the next page is there."""
    try:
        element.tag_name
    except StaleElementReferenceException:
        return True
    except WebDriverException as error:
        if "does not belong to the document" in str(error):
            return True
        raise
    return False
