"""The order in which interleaved timing runs take their variants, round after round, and how their paired ratios
are summarised (one shared rule each; no torch, so summary-only scripts can use it too).

The CPU timing scripts run one step of every variant per round, so that machine load hits all of them alike, and
compare each variant with a reference in the same round. The order within a round matters: a variant that runs
right after itself finds its caches and allocator state warm. Reversing every other round, which these scripts
used to do, ran the first and the last variant twice in a row at every round boundary; an A/A run (the same code
under two labels, 30 ms steps) measured 0.97× and 1.03× that way.
"""

from __future__ import annotations

import random
import statistics
from collections.abc import Hashable, Iterator, Sequence


def round_orders(keys: Sequence[Hashable], rounds: int, seed: int = 0) -> Iterator[list]:
    """Yield ``rounds`` orders of ``keys``: seeded random permutations, none starting with the previous one's last.

    Every variant thus runs in every position and after every other variant equally often in expectation, and
    never twice in a row (with two variants the order is fixed after the first round: each always follows the
    other). Deterministic for a given ``seed``.
    """
    rng = random.Random(seed)
    last = None
    for _ in range(rounds):
        order = list(keys)
        rng.shuffle(order)
        if len(order) > 1 and order[0] == last:
            order = order[1:] + order[:1]
        last = order[-1]
        yield order


def round_ratios(times: dict[str, list[float]], variant: str, ref: str) -> list[float]:
    """``variant``'s time / ``ref``'s time, round by round (both ran every round)."""
    return [a / b for a, b in zip(times[variant], times[ref], strict=True)]


def paired_ratios(times: dict[str, list[float]], ref: str) -> dict[str, tuple[float, float, float]]:
    """Per variant, (median, lower quartile, upper quartile) of its time / ``ref``'s time in the same round.

    A round's variants run back to back, so slow drifts of the machine (load, clock) cancel in the ratio;
    the quartiles show how much the ratio itself moves from round to round.
    """
    out = {}
    for v in times:
        ratios = sorted(round_ratios(times, v, ref))
        if len(ratios) >= 4:
            q1, _, q3 = statistics.quantiles(ratios, n=4)
        else:
            q1, q3 = ratios[0], ratios[-1]
        out[v] = (statistics.median(ratios), q1, q3)
    return out
