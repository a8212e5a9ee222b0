"""The deliverer: the face that takes the community outbox's due rows to the communities, through the
use-case layer (`gateway/exchanges/delivery.py`), never to the store. `deliverer.py` claims, sends
and records; `audit_sender.py` drains the ATNA queue; `single.py` keeps one deliverer per SQLite file.
"""
