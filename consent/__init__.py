"""Who may: the patient's policies and the policy decision point (consent issue)."""
