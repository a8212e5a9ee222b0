"""A synthetic Infomed export (XDM media and an ITI-104-style patient feed), with the quirks real
exports carry. Deterministic for a seed; fast enough for a 100,000-document benchmark."""
