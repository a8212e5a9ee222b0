"""The answers given to HL7 v2 messages, kept per message — (sender, MSH-10, the message's digest) — so
that the same message again gets the same answer and changes nothing, while a reused MSH-10 with other
content is another message, processed as such (issue 22 item 1: senders reset their counters on
restart, and two systems of one facility may both send `1`).

Why process it rather than refuse it: the second message is a real document or feed the sender
expects to be taken; refusing it would leave the document to someone's attention. What makes this
safe is the record's own idempotency: a message that is really the same document sent again with
other bytes around it (an engine that regenerates EVN-2) finds its uniqueId and SHA-1 already stored.
"""

from __future__ import annotations

from dataclasses import dataclass

from adapters.cara.store.message_inbox import DatabaseMessageInbox


@dataclass(frozen=True)
class MessageKey:
    """Which message an answer belongs to: the sender's key (senders file), MSH-10 and the digest of
    the message (its normalised text without MSH-7, which senders renew when they send again)."""

    sender: str
    control_id: str
    digest: str

    @property
    def stored(self) -> tuple[str, str, str]:
        return self.sender, self.control_id, self.digest


@dataclass(frozen=True)
class Answer:
    """An acknowledgement: its code (AA, AE, AR), its bytes, whether it is kept for the message (a
    failure of the gateway itself is not: the sender's retry is processed afresh), and for a refusal
    the error it answers, as the audit record describes it."""

    code: str
    ack: bytes
    kept: bool = True
    refusal: Exception | None = None


class MessageAnswers:
    def __init__(self, *, inbox: DatabaseMessageInbox):
        self.inbox = inbox  # also the held messages' (HeldMessages): one store of the bridge's memory
        self._inbox = inbox

    def earlier(self, key: MessageKey) -> bytes | None:
        return self._inbox.answer(key.stored)

    def earlier_many(self, keys: list[MessageKey]) -> dict[MessageKey, bytes]:
        found = self._inbox.answers([k.stored for k in keys])
        return {k: found[k.stored] for k in keys if k.stored in found}

    def earlier_in(self, connection, keys: list[MessageKey]) -> dict[MessageKey, bytes]:
        """`earlier_many` in the caller's transaction (an answer kept meanwhile by a concurrent batch)."""
        found = self._inbox.answers_in(connection, [k.stored for k in keys])
        return {k: found[k.stored] for k in keys if k.stored in found}

    def keep(self, key: MessageKey, answer: Answer) -> bytes:
        """The answer, kept when it should be; a concurrent copy's kept answer wins (and is returned)."""
        if not answer.kept:
            return answer.ack
        return self._inbox.remember(key.stored, answer.code, answer.ack)

    def keep_in(self, connection, answers: list[tuple[MessageKey, Answer]]) -> None:
        """The answers that should be kept, in the caller's transaction (one multi-row insert)."""
        self._inbox.remember_many(connection, [(k.stored, a.code, a.ack) for k, a in answers if a.kept])
