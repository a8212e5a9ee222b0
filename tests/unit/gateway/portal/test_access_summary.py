"""Who has access now (issue 27 item 12): each policy as the decision point lets it act today — a grant
overridden by a block, ended or not yet started is not "access"; the emergency setting and the provide
level are what the PDP decides for anyone and for an upload."""

import uuid
from datetime import date

from consent import policies as rules
from consent.policies import Policy
from gateway.portal.access_summary import summarise

SPID = "761337610411353650"
TODAY = date(2026, 12, 7)
GROUP = "urn:oid:2.16.756.5.30.1.999.7.1"


def policy(template, rule, subject=None, **period) -> Policy:
    return Policy(policy_set_id=f"urn:uuid:{uuid.uuid4()}", template=template, patient_spid=SPID, rule=rule,
                  subject_id=subject, **period)


NAMES = {"7601000000019": "Dr. Claire Rey", "7601000000026": "Dr. Marc Zufferey", GROUP: "Médecine interne"}


def summary(*policies):
    return summarise(list(policies), spid=SPID, today=TODAY, name_of=NAMES.get)


def test_each_grant_is_what_it_gives_today_and_why_not_when_nothing():
    result = summary(
        policy(202, rules.RESTRICTED), policy(203, rules.PROVIDE_RESTRICTED),
        policy(301, rules.RESTRICTED, "7601000000019"),
        policy(301, rules.NORMAL, "7601000000026"), policy(301, rules.EXCLUSION_LIST, "7601000000026"),
        policy(301, rules.NORMAL, "7601000000033", end=date(2026, 1, 31)),
        policy(301, rules.NORMAL, "7601000000040", start=date(2027, 1, 1), end=date(2027, 12, 31)),
        policy(302, rules.NORMAL, GROUP, end=date(2027, 6, 30)),
        policy(303, rules.FULL, "rep-jean-7"))
    assert [(a.who, a.level) for a in result.granted] == [("Dr. Claire Rey", "restricted"),
                                                           ("Médecine interne", "normal")]
    assert [(a.who, a.why_not) for a in result.without_effect] == [
        ("Dr. Marc Zufferey", "blocked"), ("7601000000033", "ended"), ("7601000000040", "not-started")]
    assert [(a.who, a.why_not) for a in result.blocks] == [("Dr. Marc Zufferey", None)]
    assert [(a.who, a.level) for a in result.representatives] == [("rep-jean-7", "full")]
    assert (result.emergency, result.provide_level) == (frozenset({"normal", "restricted"}), "restricted")
    assert result.sees("restricted") == ["Dr. Claire Rey"]
    assert result.sees("normal") == ["Dr. Claire Rey", "Médecine interne"]
    assert result.sees("secret") == []


def test_emergency_off_is_no_202_and_an_ended_mandate_is_said():
    result = summary(policy(303, rules.FULL, "rep-old", end=date(2026, 6, 30)))
    assert (result.emergency, result.provide_level, result.granted) == (frozenset(), "normal", ())
    assert [(a.who, a.why_not) for a in result.representatives] == [("rep-old", "ended")]
