"""The FHIR face over HTTPS: the app and its middleware, the routes, the door (`security`), the answers'
shapes (`outcomes`, `versioning`, `document_headers`), discovery, and the server (TLS, mutual TLS)."""
