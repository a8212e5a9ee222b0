"""The reconciliation report: every source document exactly once, totals that add up to `source`.

Built from the journal (or, for `--dry-run`, from what the run decided), never from counters kept
while running, so a resumed run reports exactly what an uninterrupted one would. `superseded`: a
document migrated and then replaced by another document of the same sources.
"""

from __future__ import annotations

from collections.abc import Iterable

from gateway.migration.journal import OUTCOMES, JournalRow


def build_report(rows: Iterable[JournalRow], *, code_tables: str, dry_run: bool = False,
                 delivery: dict[str, dict[str, str]] | None = None) -> dict:
    """`delivery`: uniqueId → community → the state of its delivery (None: delivery off). Each document in
    the record then names where its delivery stands, and `deliveries` counts them per community."""
    rows = sorted(rows, key=lambda r: r.source)
    replaced = {r.replaces for r in rows if r.replaces and r.outcome == "migrated"}
    documents = []
    totals = {"source": 0, **{outcome: 0 for outcome in OUTCOMES}}
    for row in rows:
        outcome = row.outcome
        reason = row.reason
        if outcome == "migrated" and row.unique_id in replaced:
            outcome, reason = "superseded", "migrated, then replaced by a later document of the export"
        totals["source"] += 1
        totals[outcome] += 1
        document = {"source": row.source, "uniqueId": row.unique_id, "outcome": outcome, "reason": reason,
                    **({"reasonCode": row.reason_code} if row.reason_code else {})}
        if delivery is not None and outcome in IN_THE_RECORD:
            document["delivery"] = delivery.get(row.unique_id or "", {})
        documents.append(document)
    report = {"totals": totals, "codeTables": code_tables, "dryRun": dry_run, "documents": documents}
    if delivery is not None:
        report["deliveries"] = delivery_counts(d.get("delivery", {}) for d in documents)
    return report


IN_THE_RECORD = ("migrated", "already_present", "superseded")


def delivery_counts(states: Iterable[dict[str, str]]) -> dict[str, dict[str, int]]:
    """community → state → documents (from each document's community → state)."""
    counts: dict[str, dict[str, int]] = {}
    for by_community in states:
        for community, state in by_community.items():
            counts.setdefault(community, {}).setdefault(state, 0)
            counts[community][state] += 1
    return counts


def delivery_lines(counts: dict[str, dict[str, int]]) -> list[str]:
    return [f"  delivery to {community}: " + ", ".join(f"{n} {state}" for state, n in sorted(states.items()))
            for community, states in sorted(counts.items())]


def summary(report: dict) -> str:
    totals = report["totals"]
    lines = [("DRY RUN (nothing stored) — " if report["dryRun"] else "") + f"{totals['source']} source documents: "
             + ", ".join(f"{totals[o]} {o.replace('_', ' ')}" for o in OUTCOMES)]
    reasons: dict[tuple[str, str], int] = {}
    for document in report["documents"]:
        if document["outcome"] in ("held", "rejected"):
            key = (document["outcome"], document.get("reasonCode") or "other")
            reasons[key] = reasons.get(key, 0) + 1
    for (outcome, code), count in sorted(reasons.items()):
        lines.append(f"  {outcome:9} {count:7}  {code}")
    return "\n".join(lines + delivery_lines(report.get("deliveries", {})))


def _counted(outcomes: dict[str, int], reasons: dict[tuple[str, str], int], *, held: str = "held") -> list[str]:
    """The outcomes on one line, then one line per (held|rejected, reason code)."""
    words = {**{o: o.replace("_", " ") for o in OUTCOMES}, "held": held}
    lines = [", ".join(f"{outcomes[o]} {words[o]}" for o in OUTCOMES if outcomes.get(o))]
    return lines + [f"  {outcome:9} {count:7}  {code}" for (outcome, code), count in sorted(reasons.items())]


def this_run(counts) -> str:
    """What this run did (a `job.Counts`), where the report also holds what earlier runs journaled."""
    first, *reasons = _counted(counts.outcomes, counts.reasons)
    return "\n".join([f"this run: {counts.documents} source documents processed" + (f": {first}" if first else "")
                      + f"; {counts.skipped} skipped (journaled by an earlier run)", *reasons])


def retried(counts) -> str:
    """What `migrate retry` did with the held documents (a `job.Counts`), not the media's totals."""
    if not counts.documents:
        return "nothing held: nothing to retry"
    first, *reasons = _counted(counts.outcomes, counts.reasons, held="still held")
    return "\n".join([f"retried {counts.documents} held documents: {first}", *reasons])
