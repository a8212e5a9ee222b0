"""The Infomed migration: XDM exports into the shared record through the use-case layer.

`job` runs it (read, map, resolve, provide in batches), `journal` remembers every source document's
outcome durably (and keeps held documents sealed), `report` reconciles. See docs/design-notes.md.
"""
