"""The HL7 v2 face: MLLP framing, the asyncio listener, the senders file. Messages go to the
use-case layer (`gateway/hl7_exchange.py`), never to the store."""
