"""HL7 v2 in: normalising, a focused tokenizer, MDM/ORU/ADT → the shared record's model, code tables.

Knows nothing of storage or of MLLP: `gateway/mllp` frames, routes and answers (`channel.py`), and
hands what this package maps to the use-case layer.
"""
