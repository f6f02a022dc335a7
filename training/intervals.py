"""Means over seeds with Student-t confidence intervals, and paired differences between two arms.

`python -m training.experiments` trains every arm once per seed; a figure of an arm is then a small
sample (three seeds by default), summarised by its mean and a 95 % interval ``mean ± t·s/√n`` with
``t`` the Student quantile at ``n − 1`` degrees of freedom and ``s`` the sample standard deviation.
Arms share their seeds (same initialisation stream, same augmentation draws), so two arms are
compared by the difference per seed, summarised the same way (a paired t-interval).

An IoU can be undefined (NaN, or None in the evaluation's JSON): a class absent from the validation
scenes and never predicted. Such values are left out of the mean rather than counted as 0, and the
estimate says how many were left out.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Iterable, Mapping
from dataclasses import dataclass

from scipy.stats import t as student_t

__all__ = ["Estimate", "estimate", "paired_difference", "t_quantile"]


@dataclass(frozen=True)
class Estimate:
    """The mean of ``n`` defined values and the half-width of its confidence interval.

    Attributes:
        mean: mean of the defined values; NaN when there is none.
        half_width: ``t · s / √n``; None when ``n < 2`` (one value has no spread to estimate).
        n: how many values were defined (finite) and used.
        missing: how many were undefined (NaN or None) and left out.
        confidence: the interval's coverage, e.g. 0.95.
    """

    mean: float
    half_width: float | None
    n: int
    missing: int
    confidence: float = 0.95

    @property
    def low(self) -> float | None:
        return None if self.half_width is None else self.mean - self.half_width

    @property
    def high(self) -> float | None:
        return None if self.half_width is None else self.mean + self.half_width

    @property
    def excludes_zero(self) -> bool | None:
        """Whether the interval lies wholly above or below 0; None without an interval."""
        if self.low is None or self.high is None:
            return None
        return self.low > 0 or self.high < 0


def t_quantile(probability: float, df: int) -> float:
    """The ``probability`` quantile of Student's t with ``df`` degrees of freedom."""
    if df < 1:
        raise ValueError(f"degrees of freedom must be at least 1, got {df}")
    if not 0 < probability < 1:
        raise ValueError(f"probability must be in (0, 1), got {probability}")
    return float(student_t.ppf(probability, df))


def estimate(values: Iterable[float | None], confidence: float = 0.95) -> Estimate:
    """Mean and two-sided ``confidence`` t-interval of the defined values (NaN and None left out)."""
    given = list(values)
    defined = [float(v) for v in given if v is not None and math.isfinite(v)]
    n = len(defined)
    missing = len(given) - n
    if n == 0:
        return Estimate(math.nan, None, 0, missing, confidence)
    mean = math.fsum(defined) / n
    if n == 1:
        return Estimate(mean, None, 1, missing, confidence)
    variance = math.fsum((v - mean) ** 2 for v in defined) / (n - 1)
    half_width = t_quantile(0.5 + confidence / 2, n - 1) * math.sqrt(variance / n)
    return Estimate(mean, half_width, n, missing, confidence)


def paired_difference(
    a: Mapping[Hashable, float | None], b: Mapping[Hashable, float | None], confidence: float = 0.95
) -> Estimate:
    """``a − b`` paired by key (the seed): the estimate of the per-key differences.

    Keys where either side is undefined (missing, NaN or None) are left out and counted in
    ``missing``; the t-interval then has ``n − 1`` degrees of freedom for the ``n`` pairs left.
    """
    keys = sorted(a.keys() | b.keys(), key=repr)
    return estimate((_difference(a.get(k), b.get(k)) for k in keys), confidence)


def _difference(x: float | None, y: float | None) -> float | None:
    if x is None or y is None or not (math.isfinite(x) and math.isfinite(y)):
        return None
    return x - y
