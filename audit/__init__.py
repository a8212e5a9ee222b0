"""Proof: the tamper-evident audit ledger (audit issue)."""
