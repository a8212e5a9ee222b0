"""The tokenizer reads values as spans of the message's text: the same values as splitting the message
into segments, fields, repetitions and components (the previous tokenizer, kept here as the reference),
with the document's Base64 copied once, not once per split."""

import base64
import random
import tracemalloc

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from adapters.infomed.hl7v2.code_tables import CodeTables
from adapters.infomed.hl7v2.documents import SenderProfile, document_message
from adapters.infomed.hl7v2.message import Message
from adapters.infomed.hl7v2.normalise import decode
from adapters.cara.model import Code
from official_examples import example_files


class SplitSegment:
    """The previous tokenizer's segment: a line split on the field separator."""

    def __init__(self, line, message):
        self.name, self.fields, self.message = line[:3], line.split(message.delimiters.field), message

    def raw(self, number):
        if self.name == "MSH":
            if number == 1:
                return self.message.delimiters.field
            number -= 1
        return self.fields[number] if number < len(self.fields) else ""

    def repetitions(self, number):
        return self.raw(number).split(self.message.delimiters.repetition)

    def component(self, number, component=1, *, repetition=0, subcomponent=None):
        reps = self.repetitions(number)
        return self.message.split_value(reps[repetition], component, subcomponent) if repetition < len(reps) else ""


def split_segments(message):
    return [SplitSegment(line, message) for line in message.text.split("\r") if line]


def readings(segment, fields):
    """Everything the mapping can ask of a segment, for fields 1..fields."""
    return [(segment.name, number, segment.raw(number), segment.repetitions(number),
             [segment.component(number, c, repetition=r, subcomponent=s)
              for c in (1, 2, 4, 5, 9) for r in (0, 1, 3) for s in (None, 1, 2, 3)])
            for number in range(1, fields + 1)]


def assert_reads_as_split(message):
    reference = split_segments(message)
    assert [s.name for s in message.segments] == [s.name for s in reference]
    for segment, split in zip(message.segments, reference):
        fields = len(split.fields) + 2
        assert readings(segment, fields) == readings(split, fields)
        assert [segment.components(n) for n in range(1, fields + 1)] == [
            split.repetitions(n)[0].split(message.delimiters.component) for n in range(1, fields + 1)]


@pytest.mark.parametrize("sample", example_files("hl7v2", "*.hl7"))
def test_the_public_samples_read_as_splitting_them_does(sample):
    assert_reads_as_split(Message(*decode(sample.read_bytes())))


PIECES = st.lists(st.sampled_from(["|", "^", "~", "&", "\\", "\r", "\r\r", "A", "Bé", "MSH", "PID", "OBX",
                                   "\\F\\", "\\S\\", "\\X41\\", " ", ""]), max_size=40).map("".join)


@settings(max_examples=500, deadline=None)
@given(st.sampled_from(["MSH|^~\\&|", "MSH#*@!%#", "MSH|^~\\&#|", "MSH|^~\\|"]), PIECES)
def test_any_message_reads_as_splitting_it_does(header, body):
    assert_reads_as_split(Message(header + body, "utf-8"))


DOCUMENT = random.Random(5).randbytes(6_000_000)
ENCODED = base64.b64encode(DOCUMENT).decode()
TEXT = ("MSH|^~\\&|KIS|HOSP|EPR|EPR|20261120100000||MDM^T02^MDM_T02|B-1|P|2.5\r"
        "PID|1||L-1^^^Demo&2.999.1&ISO^PI||Demo^Valérie||19700412|F\r"
        "TXA|1|DS|AP|20261120093000|||||7601000000002^Favre^Luc|||urn:oid:2.25.1|||||AU||AV\r"
        f"OBX|1|ED|DOC^Document||^application^pdf^Base64^{ENCODED}||||||F")
PROFILE = SenderProfile(source_id="urn:oid:2.999.2", facility_type=Code("s", "f", "F"),
                        practice_setting=Code("s", "p", "P"))


def allocated_at_peak(work):
    tracemalloc.start()
    try:
        result = work()
        return result, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_tokenizing_a_message_does_not_copy_its_segments():
    message, peak = allocated_at_peak(lambda: Message(TEXT, "utf-8"))
    assert [s.name for s in message.segments] == ["MSH", "PID", "TXA", "OBX"]
    assert peak < len(ENCODED) // 100


def test_reading_and_mapping_an_ed_document_copies_its_base64_once():
    mapped, peak = allocated_at_peak(lambda: document_message(Message(TEXT, "utf-8"), sender_key="k",
                                                              profile=PROFILE, tables=CodeTables()))
    assert mapped.submission.documents[0].content == DOCUMENT
    assert peak < len(ENCODED) + len(DOCUMENT) + len(ENCODED) // 100
