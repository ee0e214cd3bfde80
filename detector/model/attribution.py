"""Onset against adoption: did a rise begin with a deploy's releases, or at some moment for everyone?

A deploy test crossing says the deploy's releases run a higher rate than the null; it does not say the
deploy caused it. A backend outage that begins 90 minutes after a deploy, when nearly every session
already runs the new release, raises the new release's rate too. The two explanations make different
predictions about *when* and *where* the rate rose, and we compare their likelihoods on the per-minute
counts of every release:

* ``deploy(D)``: the releases first deployed at or after ``D`` (its lineage) run one rate from ``D`` on;
  every other release, before and after ``D``, runs another. A rise brought by the deploy follows the
  new releases' adoption, whatever their share.
* ``onset(tau, tau2)``: every release runs a higher rate from ``tau`` to ``tau2`` (or to now) than
  outside it, both free. A rise from outside (an outage, a third party) hits old and new releases alike
  and begins (and ends) when it does, not when a release was adopted. The deploy model likewise may
  end at a later deploy of its lineage (the release that fixed it).

Two deploy models have two rates each, so the better fit is the likelier cause, with no margin (a rise
the next release brought is not its predecessor's because the predecessor's release ran a few more of
the error by chance). Both have two rates; ``onset`` also fits ``tau``, so it must beat the best deploy model by
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
    all_x, all_n = float(total_x.sum()), float(total_n.sum())

    length = counts.shape[1]
    ends = _episode_ends(length)

    def deploy_fit(index: int) -> float:
        """Best fit of "the releases of deploy ``index`` rose from it": up to now, up to a later deploy
        of its lineage (the release that fixed it), or for a while (ended episodes pay for their end)."""
        begin = max(origins[index] - first_minute, 0)
        best = -np.inf
        for end in [None, *[j for j in range(len(origins)) if origins[j] > origins[index]]]:
            rows = lineages[index] if end is None else lineages[index] & ~lineages[end]
            cum_x = np.concatenate(([0.0], np.cumsum(counts[rows].sum(axis=0))))
            cum_n = np.concatenate(([0.0], np.cumsum(exposure[rows].sum(axis=0))))
            stops = ends[ends > begin] if end is None else np.array([length])
            new_x, new_n = cum_x[stops] - cum_x[begin], cum_n[stops] - cum_n[begin]
            out_x, out_n = all_x - new_x, all_n - new_n
            with np.errstate(divide="ignore", invalid="ignore"):
                rises = (new_n > 0) & ((out_n <= 0) | (new_x * out_n > out_x * new_n))  # a rise, not a drop
                fit = np.where(rises, _log_lik(new_x, new_n) + _log_lik(out_x, out_n), -np.inf)
            if end is None and len(fit) > 1:
                fit[:-1] -= np.log(len(ends))
            best = max(best, float(fit.max()) if len(fit) else -np.inf)
        return best

    tested = deploy_fit(0)
    later = [(deploy_fit(i), origins[i]) for i in range(1, len(origins))]
    onset_minute, onset_value = _best_episode(total_x, total_n, first_minute)

    if later:
        best_later, later_origin = max(later)
        if best_later > tested:  # two deploys, two rates each: the better fit is the likelier cause
            return Attribution("later_deploy", onset_minute, tested - best_later, later_origin)
    best_deploy = max([tested, *[fit for fit, _ in later]])
    if onset_value - best_deploy >= margin:
        return Attribution("onset", onset_minute, tested - onset_value)
    return Attribution("deploy", onset_minute, onset_value - tested)


EPISODE_END_STEP = 5
"""An episode's end is searched every this many minutes (its start every minute)."""


def _episode_ends(length: int) -> np.ndarray:
    """Column indices (exclusive) where an episode may end; the last is "not yet"."""
    return np.unique(np.append(np.arange(EPISODE_END_STEP, length, EPISODE_END_STEP), length))


def _best_episode(total_x: np.ndarray, total_n: np.ndarray, first_minute: int) -> tuple[int, float]:
    """Best "every release rose at ``tau`` (and fell back at ``tau2``, or not yet)" fit: its onset minute
    and its log-likelihood, the ended episodes' less the log of the ends tried (their extra parameter)."""
    cum_x = np.concatenate(([0.0], np.cumsum(total_x)))
    cum_n = np.concatenate(([0.0], np.cumsum(total_n)))
    length = len(total_x)
    if length < 2:
        return first_minute, -np.inf
    starts = np.arange(1, length)
    ends = _episode_ends(length)
    tau, tau2 = starts[:, None], ends[None, :]
    inside_x = cum_x[tau2] - cum_x[tau]
    inside_n = cum_n[tau2] - cum_n[tau]
    outside_x, outside_n = cum_x[-1] - inside_x, cum_n[-1] - inside_n
    with np.errstate(divide="ignore", invalid="ignore"):
        valid = (tau2 > tau) & (inside_n > 0) & (outside_n > 0) & (inside_x * outside_n > outside_x * inside_n)
        fit = np.where(valid, _log_lik(inside_x, inside_n) + _log_lik(outside_x, outside_n), -np.inf)
    fit[:, :-1] -= np.log(len(ends))  # an episode that ended fits one more parameter
    row, column = np.unravel_index(int(np.argmax(fit)), fit.shape)
    return first_minute + int(starts[row]), float(fit[row, column])
