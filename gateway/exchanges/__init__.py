"""The use-case layer: every exchange, whoever asks for it (HTTP routes, the MLLP bridge, the migration,
the patient's page, the command line). Each use-case decides access (`access`), writes its audit record
(`auditing`) and is the only door to the store; the faces import this floor, never `adapters.cara.store`."""
