"""The HL7 v2 face as a channel: MLLP framing, the asyncio listener and its group commit, the senders
file, reading a message (`reading`), routing it (`channel`) and answering it (`acks`, the one table).
Messages go to the use-case layer (gateway/exchanges: message_documents, message_patients,
held_messages, message_answers), never to the store."""
