"""`Cache-Control: no-store` on every answer of the FHIR and admin routes that may carry patient data.

Why: a search result, a DocumentReference or a trail page kept by a browser's or a proxy's cache would
outlive the consent that allowed it. Only public metadata (the CapabilityStatement, discovery) may be
cached. A route that sets its own Cache-Control (ITI-68's document headers) keeps it.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

PATIENT_DATA_PREFIXES = ("/fhir/", "/admin/")
CACHEABLE = ("/fhir/metadata", "/fhir/.well-known/")
NO_STORE = (b"cache-control", b"no-store")


class PatientDataNotStored:
    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "") if scope["type"] == "http" else ""
        if not path.startswith(PATIENT_DATA_PREFIXES) or path.startswith(CACHEABLE):
            await self.app(scope, receive, send)
            return

        async def send_no_store(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = message.get("headers", [])
                if not any(name.lower() == b"cache-control" for name, _ in headers):
                    message["headers"] = [*headers, NO_STORE]
            await send(message)

        await self.app(scope, receive, send_no_store)
