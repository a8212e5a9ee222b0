"""IHE XDM media (ITI-32) from Infomed: the media reader, ebRIM metadata, code tables, and the
mapping to the shared record's model. Knows nothing of storage."""
