"""A community stub as strict as the cara platform (test code, not product): see README.md."""

from .registry import CodeTable, StoredDocument
from .scenarios import Scenario, Scenarios
from .stub import CommunityStub, Patient

__all__ = ["CommunityStub", "Patient", "CodeTable", "StoredDocument", "Scenario", "Scenarios"]
