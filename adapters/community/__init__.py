"""The gateway as a Document Source of a remote XDS.b community (cara on emedo): ITI-41 with MTOM and
XUA (ITI-40), the community's patient id (PIX V3, ITI-45) and ATNA (ITI-20).

An adapter like `adapters/cara`: it knows nothing of the outbox, the HTTP faces or the gateway. The
deliverer calls `XdsDocumentSource` (source.py) with a `ProvideRequest` and acts on the outcome.
Configuration: `config.load_communities` (the `EPR_COMMUNITIES` file).
"""
