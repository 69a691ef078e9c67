"""The claim-check tables of every study: what the paper claims, our numbers, the criterion
the numbers must meet, and whether they meet it.

A :class:`Claim` carries the two numbers it compares (one column each, named after the
methods), the ``value`` its :class:`Criterion` reads (their difference, their ratio, or a
measurement of its own) and the criterion itself. ``holds`` is never given: it is the
criterion evaluated on the value, and the criterion's text in the table is written from
the same operator and threshold, so the two cannot disagree. :func:`claims_table` stacks
the claims and appends an overall row that holds when every claim does.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import pandas as pd

# The comparisons a criterion may use, by the symbol its text shows.
OPERATORS: dict[str, Callable[[float, float], bool]] = {
    ">": operator.gt,
    ">=": operator.ge,
    "<": operator.lt,
    "<=": operator.le,
    "==": operator.eq,
}


@dataclass(frozen=True)
class Criterion:
    """``<subject> <operator> <threshold>``, e.g. ``de_novo / scarches >= 5``.

    ``subject`` only names the value in the table's text (how it was computed); the
    verdict compares the value with ``threshold``.
    """

    subject: str
    operator: str
    threshold: float

    def __post_init__(self) -> None:
        if self.operator not in OPERATORS:
            raise ValueError(
                f"criterion operator {self.operator!r} is not one of {sorted(OPERATORS)}."
            )

    def holds(self, value: float) -> bool:
        """Whether ``value`` meets the criterion (a NaN value never does)."""
        return bool(OPERATORS[self.operator](value, self.threshold))

    def __str__(self) -> str:
        return f"{self.subject} {self.operator} {self.threshold:g}"


@dataclass(frozen=True)
class Claim:
    """One claim of the paper, checked on our numbers.

    ``compared``: the two numbers the claim compares, by column name (e.g. ``{"scvi":
    0.61, "scvi_cc": 0.83}``); ``value``: what ``criterion`` reads.
    """

    claim: str
    quantity: str
    compared: Mapping[str, float]
    value: float
    criterion: Criterion

    @property
    def holds(self) -> bool:
        return self.criterion.holds(self.value)


def claims_table(
    claims: Sequence[Claim],
    overall: str,
    overall_quantity: str = "all of the above",
    value_column: str = "value",
) -> pd.DataFrame:
    """One row per claim, then the overall row (``overall``) that holds when all do.

    Columns: ``claim``, ``quantity``, the ``compared`` columns (the first claim's order),
    ``value_column``, ``criterion``, ``holds``. The overall row fills only ``claim``,
    ``quantity`` and ``holds``.
    """
    if not claims:
        raise ValueError("a claims table needs at least one claim.")
    rows = [
        {"claim": c.claim, "quantity": c.quantity, **c.compared, value_column: c.value,
         "criterion": str(c.criterion), "holds": c.holds}
        for c in claims
    ]
    checks = pd.DataFrame(rows)
    summary = {"claim": overall, "quantity": overall_quantity,
               "holds": bool(checks["holds"].all())}
    return pd.concat([checks, pd.DataFrame([summary])], ignore_index=True)
