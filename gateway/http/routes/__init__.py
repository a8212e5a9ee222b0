"""HTTP routes: thin adapters from FastAPI to the use-case layer (`gateway.exchanges.documents`)."""
