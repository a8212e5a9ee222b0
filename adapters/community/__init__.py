"""The gateway as a Document Source of a remote XDS.b community (cara on emedo): ITI-41 with MTOM and
XUA (ITI-40), the community's patient id (PIX V3, ITI-45) and ATNA (ITI-20).

An adapter like `adapters/cara`: it knows nothing of the outbox, the HTTP faces or the gateway. The
deliverer calls `source.XdsDocumentSource` with a `ProvideRequest` and acts on the outcome
(`outcomes.py`). Configuration: `config.load_communities` (the `EPR_COMMUNITIES` file).

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
"""
