"""The HL7 v2 face: MLLP framing, the asyncio listener, the senders file. Messages go to the
use-case layer (`gateway/exchanges/hl7v2.py`), never to the store."""
