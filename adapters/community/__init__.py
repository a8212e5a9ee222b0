"""The gateway as a Document Source of a remote XDS.b community (cara on emedo): ITI-41 with MTOM and
XUA (ITI-40), the community's patient id (PIX V3, ITI-45) and ATNA (ITI-20); or of a remote MHD
Document Recipient (another gateway): ITI-65 with an IUA token by client credentials.

An adapter like `adapters/cara`: it knows nothing of the outbox, the HTTP faces or the gateway. The
deliverer calls `source.XdsDocumentSource` or `mhd.MhdDocumentSource` (`mhd.document_source` chooses by
the configuration) with a `ProvideRequest` and acts on the outcome (`outcomes.py`). Configuration:
`config.load_communities` (the `EPR_COMMUNITIES` file).

  config.py         the communities file, checked whole
  source.py         XdsDocumentSource: patient → assertion → ITI-41 → outcome + audit messages
  xds_table.py      the one model ⇄ XDS table (schemes, slots, associations, coding schemes, uniqueIds)
  ebrim.py          the model → ebRIM ProvideAndRegisterDocumentSetRequest (authors.py, hl7_types.py,
                    xml_writer.py)
  iti41.py          the MTOM request (soap.py, mtom.py) and its answer → outcome (outcomes.py)
  xua.py            ITI-40: the RST, the issued assertion as received, the cache (tcu_assertion.py signs)
  pix_v3.py         ITI-45 by SPID → MPI-PID
  atna.py           ITI-20 audit messages and the syslog-TLS sender (adapters/syslog.py)
  transport.py      HTTPS with mutual TLS; failures below SOAP as TransportError
  mhd.py            MhdDocumentSource: token → ITI-65 Bundle → outcome (no ATNA messages)
  mhd_bundle.py     the model → a CH MHD Provide Document Bundle; mhd_answers.py the answer → outcome
  client_credentials.py   the IUA token by client credentials (RFC 8705 mutual TLS), kept until near expiry
"""
