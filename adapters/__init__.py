"""Adapters: the shared record (cara) and the legacy Infomed sources."""
