"""Which segments (route, browser, OS, ...) an anomaly's affected sessions crowd into."""

from __future__ import annotations

import pandas as pd
from scipy.stats import binom


def segments_over_represented(
    affected: pd.DataFrame,
    population: pd.DataFrame,
    columns: tuple[str, ...] = ("route", "browser", "os"),
    *,
    min_share: float = 0.2,
    min_lift: float = 1.5,
    alpha: float = 0.01,
) -> list[dict[str, object]]:
    """Segment values far more common among ``affected`` rows than in ``population`` rows.

    Rows are sessions (or events) with one value per column; columns missing from either frame are
    skipped. A value is reported when its share among affected rows is at least ``min_share``, its
    lift over the population share at least ``min_lift``, and a one-sided binomial test rejects "no
    over-representation" at ``alpha`` divided by the number of values tested (Bonferroni). The
    population share is smoothed (add one half) so unseen values have a finite lift.

    Returns dicts ``{"column", "value", "share", "baseline_share", "lift"}``, highest share first.
    A column with no entry means the anomaly is spread like the population ("all browsers").
    """
    n_affected = len(affected)
    n_population = len(population)
    if n_affected == 0 or n_population == 0:
        return []
    usable = [c for c in columns if c in affected.columns and c in population.columns]
    affected_counts = {c: affected[c].astype(str).value_counts() for c in usable}
    population_counts = {c: population[c].astype(str).value_counts() for c in usable}
    n_tests = sum(len(v) for v in affected_counts.values())
    results: list[dict[str, object]] = []
    for column in usable:
        for value, count in affected_counts[column].items():
            share = count / n_affected
            raw_baseline = population_counts[column].get(value, 0) / n_population
            baseline = (population_counts[column].get(value, 0) + 0.5) / (n_population + 1.0)
            lift = share / baseline
            p_value = float(binom.sf(count - 1, n_affected, baseline))
            if share >= min_share and lift >= min_lift and p_value <= alpha / n_tests:
                results.append(
                    {
                        "column": column,
                        "value": value,
                        "share": round(share, 4),
                        "baseline_share": round(raw_baseline, 4),
                        "lift": round(lift, 2),
                    }
                )
    results.sort(key=lambda r: (-float(r["share"]), -float(r["lift"]), str(r["column"])))
    return results
