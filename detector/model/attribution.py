"""Onset against adoption: did a rise begin with a deploy's releases, or at some moment for everyone?

A deploy test crossing says the deploy's releases run a higher rate than the null; it does not say the
deploy caused it. A backend outage that begins 90 minutes after a deploy, when nearly every session
already runs the new release, raises the new release's rate too. The two explanations make different
predictions about *when* and *where* the rate rose, and we compare their likelihoods on the per-minute
counts of every release:

* ``deploy(D)``: the releases first deployed at or after ``D`` (its lineage) run one rate from ``D`` on;
  every other release, before and after ``D``, runs another. A rise brought by the deploy follows the
  new releases' adoption, whatever their share.
* ``onset(tau)``: every release runs one rate before ``tau`` and a higher one from ``tau`` on, with
  ``tau`` free. A rise from outside (an outage, a third party) hits old and new releases alike and
  begins when it begins, not when the release was adopted.

Both have two rates; ``onset`` also fits ``tau``, so it must beat the best deploy model by
``margin`` nats (``log 1000`` by default). Under a deploy-caused rise, the best ``tau`` beats the deploy
model by ``g`` nats or more with probability about ``e^-g`` (the first affected sessions arriving late by
chance), so ``log 1000`` misreads about 0.1-1 % of deploy incidents as onsets while an outage hitting
five sessions after an hour of silence on the new release already gives ``5 log 13 = 12.8`` nats.
Poisson log-likelihoods drop the ``sum x log n`` terms, which are the same under every model.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def _log_lik(counts: np.ndarray, exposure: np.ndarray) -> np.ndarray:
    """Maximised Poisson log-likelihood ``X log(X / N) - X`` of one rate (0 where ``X`` is 0)."""
    counts = np.asarray(counts, float)
    exposure = np.maximum(np.asarray(exposure, float), counts)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(counts > 0, counts * np.log(counts / np.where(exposure > 0, exposure, 1.0)) - counts, 0.0)


@dataclass(frozen=True)
class Attribution:
    """Which explanation of a rise fits the counts best."""

    cause: str
    """``deploy`` (the tested deploy), ``later_deploy`` (a later deploy of its lineage) or ``onset``."""
    onset_minute: int
    """Best onset ``tau`` (absolute minute) of the ``onset`` model."""
    evidence: float
    """log-likelihood of the winning alternative over the tested deploy's model (<= 0 when it wins)."""
    later_origin: int | None = None
    """Origin of the later deploy that explains the rise better, when ``cause == "later_deploy"``."""


def attribute_rise(
    counts: np.ndarray,
    exposure: np.ndarray,
    first_minute: int,
    origins: list[int],
    lineages: list[np.ndarray],
    margin: float,
) -> Attribution:
    """Compare "the deploy at ``origins[0]``" with later deploys and with a free onset.

    ``counts``/``exposure`` are (releases x minutes) from ``first_minute`` on; ``lineages[i]`` is the
    boolean row mask of the releases of deploy ``i`` (first deployed at or after ``origins[i]``).
    ``origins[1:]`` are later deploys of the first one's lineage, each tested as an explanation too.
    """
    counts = np.asarray(counts, float)
    exposure = np.maximum(np.asarray(exposure, float), counts)
    total_x, total_n = counts.sum(axis=0), exposure.sum(axis=0)

    def deploy_fit(origin: int, lineage: np.ndarray) -> float:
        start = max(origin - first_minute, 0)
        new_x = counts[lineage, start:].sum()
        new_n = exposure[lineage, start:].sum()
        return float(_log_lik(new_x, new_n) + _log_lik(total_x.sum() - new_x, total_n.sum() - new_n))

    tested = deploy_fit(origins[0], lineages[0])
    later = [(deploy_fit(o, lin), o) for o, lin in zip(origins[1:], lineages[1:], strict=True)]

    cum_x = np.concatenate(([0.0], np.cumsum(total_x)))
    cum_n = np.concatenate(([0.0], np.cumsum(total_n)))
    before_x, before_n = cum_x[1:-1], cum_n[1:-1]
    after_x, after_n = cum_x[-1] - before_x, cum_n[-1] - before_n
    with np.errstate(divide="ignore", invalid="ignore"):
        rises = (after_x * before_n > before_x * after_n) & (before_n > 0) & (after_n > 0)
    onset_fit = np.where(rises, _log_lik(before_x, before_n) + _log_lik(after_x, after_n), -np.inf)
    best_tau = int(np.argmax(onset_fit)) if len(onset_fit) else 0
    onset_minute = first_minute + best_tau + 1
    onset_value = float(onset_fit[best_tau]) if len(onset_fit) else -np.inf

    if later:
        best_later, later_origin = max(later)
        if best_later - tested >= margin:
            return Attribution("later_deploy", onset_minute, tested - best_later, later_origin)
    best_deploy = max([tested, *[fit for fit, _ in later]])
    if onset_value - best_deploy >= margin:
        return Attribution("onset", onset_minute, tested - onset_value)
    return Attribution("deploy", onset_minute, onset_value - tested)
