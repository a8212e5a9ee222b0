"""Readers of what Infomed hands over (XDM exports, HL7 v2 feeds).

They produce the shared record's model (`adapters.cara.model`) and know nothing of storage.
Built by the migration and bridge issues.
"""
