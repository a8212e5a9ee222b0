"""The lists' filters (a period, a page number) read from the query, and what is wrong with them said
at the field: a date that is not one, a period that ends before it starts, a page that does not exist.
Each is answered with the reason and the values as typed, never silently ignored or swapped."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from adapters.cara.dates import InvalidDate, parse_full_date
from adapters.cara.identifier_syntax import ascii_int
from gateway.pages.i18n import N_
from gateway.portal.sharing import FormProblem


@dataclass(frozen=True)
class Filters:
    since: date | None
    until: date | None
    page: int
    typed: dict[str, str]  # the values as given, shown again in the form
    problem: FormProblem | None  # the first thing wrong with them, at its field

    @property
    def status(self) -> int:
        return 400 if self.problem else 200


def read_filters(query) -> Filters:
    typed = {name: query.get(name, "") for name in ("from", "to", "page")}
    problem = None
    since, until = _day(typed["from"]), _day(typed["to"])
    page = ascii_int(typed["page"]) if typed["page"] else 1
    for name, value, parsed in (("from", typed["from"], since), ("to", typed["to"], until)):
        if value and parsed is None and problem is None:
            problem = FormProblem(N_("Enter the date as year-month-day."), name)
    if problem is None and since and until and until < since:
        problem = FormProblem(N_("The end of the period is before its start: please check the dates."), "to")
    if problem is None and (page is None or page < 1):
        problem = FormProblem(N_("There is no such page."), "page")
    return Filters(since, until, page or 1, typed, problem)


def past_the_end(filters: Filters, pages: int) -> FormProblem | None:
    """A page after the last one (the list shrank, or a link was edited): say so and offer the last."""
    if filters.page > pages:
        return FormProblem(N_("There is no page %(page)d. The last page is page %(pages)d."), "page", page=filters.page,
                           pages=pages)
    return None


def _day(value: str) -> date | None:
    """A `YYYY-MM-DD` as typed in the form (the one date parser), else None."""
    try:
        return parse_full_date(value) if value else None
    except InvalidDate:
        return None
