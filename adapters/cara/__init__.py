"""The shared record: model, MHD/FHIR vocabulary, encrypted local store, MPI."""
