"""The gateway: HTTP (and later MLLP) face, authentication, the exchange use-cases, CLI, settings."""
