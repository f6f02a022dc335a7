"""training.intervals against figures computed by hand (t quantiles from a printed t table)."""

from __future__ import annotations

import math

import pytest

from training.intervals import estimate, paired_difference, t_quantile

# Two-sided 95 % quantiles of Student's t, t(0.975; df), from the printed table.
T_TABLE = {1: 12.7062, 2: 4.3027, 4: 2.7764, 10: 2.2281, 30: 2.0423}


@pytest.mark.parametrize("df", sorted(T_TABLE))
def test_t_quantile_matches_the_table(df: int) -> None:
    assert t_quantile(0.975, df) == pytest.approx(T_TABLE[df], abs=1e-4)


def test_t_quantile_rejects_no_degrees_of_freedom() -> None:
    with pytest.raises(ValueError, match="degrees of freedom"):
        t_quantile(0.975, 0)


def test_mean_and_t_interval_of_three_seeds() -> None:
    # 0.5, 0.6, 0.7: mean 0.6; s² = (0.01 + 0 + 0.01) / 2 = 0.01, s = 0.1; h = t(0.975; 2) · 0.1 / √3.
    e = estimate([0.5, 0.6, 0.7])
    assert (e.n, e.missing) == (3, 0)
    assert e.mean == pytest.approx(0.6)
    assert e.half_width == pytest.approx(4.3027 * 0.1 / math.sqrt(3), abs=1e-5)  # 0.24841
    assert e.low == pytest.approx(0.6 - 0.24841, abs=1e-5) and e.excludes_zero is True


def test_undefined_values_are_left_out_and_counted() -> None:
    # NaN and None (the JSON form of an undefined IoU) drop out: 0.5 and 0.7 remain, s = √0.02.
    e = estimate([0.5, math.nan, None, 0.7])
    assert (e.n, e.missing) == (2, 2)
    assert e.mean == pytest.approx(0.6)
    assert e.half_width == pytest.approx(12.7062 * math.sqrt(0.02) / math.sqrt(2), abs=1e-4)  # 1.27062


def test_one_value_has_no_interval_and_none_has_no_mean() -> None:
    one = estimate([0.3, None])
    assert (one.mean, one.half_width, one.n, one.missing) == (0.3, None, 1, 1)
    assert one.low is None and one.excludes_zero is None
    none = estimate([math.nan])
    assert math.isnan(none.mean) and none.half_width is None and (none.n, none.missing) == (0, 1)


def test_paired_difference_over_shared_seeds() -> None:
    # Differences per seed 0.10, 0.12, 0.11: mean 0.11, s = 0.01, h = 4.3027 · 0.01 / √3 = 0.024841.
    a = {0: 0.50, 1: 0.62, 2: 0.71}
    b = {0: 0.40, 1: 0.50, 2: 0.60}
    d = paired_difference(a, b)
    assert (d.n, d.missing) == (3, 0)
    assert d.mean == pytest.approx(0.11)
    assert d.half_width == pytest.approx(4.3027 * 0.01 / math.sqrt(3), abs=1e-6)
    assert d.excludes_zero is True
    # The same arms unpaired would overlap heavily (s of each arm ≈ 0.105): pairing is what shows it.
    assert estimate(a.values()).low < estimate(b.values()).high  # type: ignore[operator]
    assert paired_difference(b, a).mean == pytest.approx(-0.11) and paired_difference(b, a).excludes_zero


def test_paired_difference_drops_a_seed_undefined_on_either_side() -> None:
    # Seed 2 is NaN in a, seed 3 only in b: pairs 0.10 and 0.12 remain, s = √0.0002, h = 12.7062 · s / √2.
    d = paired_difference({0: 0.5, 1: 0.62, 2: math.nan}, {0: 0.4, 1: 0.5, 2: 0.6, 3: 0.7})
    assert (d.n, d.missing) == (2, 2)
    assert d.mean == pytest.approx(0.11)
    assert d.half_width == pytest.approx(0.127062, abs=1e-5)
    assert d.excludes_zero is False  # 0.11 − 0.127 < 0
