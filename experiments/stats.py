"""Confidence intervals and paired seed comparisons for the sweep tables, in pure ``math``.

Mini-scale runs differ a lot between seeds, so a table of means says little until it says how sure
each mean is and whether two rows differ by more than the seeds do. Users do not have scipy, so the
Student t distribution is computed here: its CDF from the regularized incomplete beta function
(a continued fraction evaluated with the modified Lentz method) and its quantile by bisection on the CDF.
"""
from __future__ import annotations

import math
import statistics
from dataclasses import asdict, dataclass, field

_TINY = 1e-300  # stands in for an exact zero in Lentz's method, which divides by its partial results
_EPS = 1e-15


def _beta_fraction(a: float, b: float, x: float) -> float:
    """The continued fraction 1 + d1/(1 + d2/(1 + ...)) of I_x(a, b) = x^a (1-x)^b / (a B(a, b)) / fraction.

    d_{2m+1} = -(a+m)(a+b+m) x / ((a+2m)(a+2m+1)) and d_{2m} = m(b-m) x / ((a+2m-1)(a+2m)). It converges
    fast for x < (a+1)/(a+b+2); the caller uses the symmetry I_x(a, b) = 1 - I_{1-x}(b, a) otherwise.
    """
    f, c, d = 1.0, 1.0, 0.0
    for j in range(1, 1000):
        m = j // 2
        if j % 2:
            term = -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1))
        else:
            term = m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m))
        d = 1.0 + term * d
        d = 1.0 / (d if abs(d) > _TINY else _TINY)
        c = 1.0 + term / c
        c = c if abs(c) > _TINY else _TINY
        f *= c * d
        if abs(c * d - 1.0) < _EPS:
            return f
    raise ArithmeticError(f"incomplete beta fraction did not converge (a={a}, b={b}, x={x})")


def _betainc(a: float, b: float, x: float, y: float) -> float:
    """I_x(a, b) given x and y = 1 - x, each computed by the caller without cancellation."""
    if x <= 0.0:
        return 0.0
    if y <= 0.0:
        return 1.0
    log_front = a * math.log(x) + b * math.log(y) + math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b)
    if x < (a + 1.0) / (a + b + 2.0):
        return math.exp(log_front) / a / _beta_fraction(a, b, x)
    return 1.0 - math.exp(log_front) / b / _beta_fraction(b, a, y)


def betainc(a: float, b: float, x: float) -> float:
    """Regularized incomplete beta function I_x(a, b) for a, b > 0 and 0 <= x <= 1."""
    return _betainc(a, b, x, 1.0 - x)


def _t_tail(t: float, df: float) -> float:
    """P(T > t) for t >= 0: half of I_{df/(df+t^2)}(df/2, 1/2), accurate in the far tail (tiny p-values)."""
    t2 = t * t
    if t2 == 0.0:
        return 0.5
    ratio = df / t2  # 0 when t*t overflows: the tail is then 0
    return 0.5 * _betainc(df / 2.0, 0.5, ratio / (1.0 + ratio), 1.0 / (1.0 + ratio))


def t_cdf(t: float, df: float) -> float:
    """P(T <= t) for Student's t with ``df`` degrees of freedom."""
    if math.isnan(t):
        return math.nan
    return 1.0 - _t_tail(t, df) if t >= 0 else _t_tail(-t, df)


def t_two_sided_p(t: float, df: float) -> float:
    """P(|T| >= |t|): the two-sided p-value of a t statistic."""
    return math.nan if math.isnan(t) else 2.0 * _t_tail(abs(t), df)


def t_quantile(p: float, df: float) -> float:
    """The t with P(T <= t) = p, by bisection on the tail probability (monotone, so it cannot diverge)."""
    if math.isnan(p) or not 0.0 <= p <= 1.0:
        raise ValueError(f"t_quantile: probability {p} is not in [0, 1]")
    if p in (0.0, 1.0):
        return math.inf if p else -math.inf
    tail = min(p, 1.0 - p)  # exact for p >= 0.5; solve P(T > t) = tail on t >= 0, then mirror
    if tail == 0.5:
        return 0.0
    lo, hi = 0.0, 1.0
    while _t_tail(hi, df) > tail:
        lo, hi = hi, 2.0 * hi
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if mid in (lo, hi):  # no float left between them
            break
        lo, hi = (mid, hi) if _t_tail(mid, df) > tail else (lo, mid)
    t = 0.5 * (lo + hi)
    return t if p > 0.5 else -t


def _as_json(obj) -> dict:
    """The dataclass as a dict with nan as None: json.dumps would write NaN, which is not JSON."""
    return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in asdict(obj).items()}


@dataclass(frozen=True)
class MeanCI:
    """A mean with its Student t confidence interval; with one value the interval is unknown (nan)."""

    n: int
    mean: float
    std: float
    half_width: float
    low: float
    high: float
    level: float = 0.95

    as_dict = _as_json


def mean_ci(values, level: float = 0.95) -> MeanCI:
    """Mean ± t_{(1+level)/2, n-1} · std / sqrt(n): the interval that covers the true mean ``level`` of the time.

    Unlike mean ± std it shrinks with more seeds, and for 2-3 seeds it is honest about how wide it is.
    """
    values = [float(v) for v in values]
    n = len(values)
    if n == 0:
        return MeanCI(0, math.nan, math.nan, math.nan, math.nan, math.nan, level)
    mean = statistics.fmean(values)
    if n == 1:
        return MeanCI(1, mean, math.nan, math.nan, math.nan, math.nan, level)
    std = statistics.stdev(values)
    half = t_quantile(0.5 + level / 2.0, n - 1) * std / math.sqrt(n)
    return MeanCI(n, mean, std, half, mean - half, mean + half, level)


@dataclass(frozen=True)
class PairedDifference:
    """other − baseline over the seeds both rows ran, with the CI and p-value of the paired t-test."""

    n: int
    mean: float
    low: float
    high: float
    p: float
    distinguishable: bool
    level: float = 0.95
    differences: dict = field(default_factory=dict)  # seed -> other − baseline

    as_dict = _as_json


def paired_difference(baseline: dict, other: dict, level: float = 0.95) -> PairedDifference:
    """Compare two rows seed by seed (same seed = same data order and init where the models allow).

    Pairing removes the seed-to-seed spread the two rows share, which is most of it at mini scale, so
    a real difference shows with fewer seeds than comparing two independent means would need. Only
    the seeds present in both dicts are used; under 2 of them nothing can be said (p nan).
    ``distinguishable`` is "the CI excludes 0", the same as p < 1 − level.
    """
    diffs = {s: float(other[s]) - float(baseline[s]) for s in sorted(set(baseline) & set(other))}
    ci = mean_ci(diffs.values(), level)
    if ci.n < 2:
        return PairedDifference(ci.n, ci.mean, math.nan, math.nan, math.nan, False, level, diffs)
    se = ci.std / math.sqrt(ci.n)
    if se == 0.0:  # every seed moved by exactly the same amount: t is ±inf, or undefined when that is 0
        p = math.nan if ci.mean == 0.0 else 0.0
        return PairedDifference(ci.n, ci.mean, ci.mean, ci.mean, p, ci.mean != 0.0, level, diffs)
    p = t_two_sided_p(ci.mean / se, ci.n - 1)
    return PairedDifference(ci.n, ci.mean, ci.low, ci.high, p, ci.low > 0.0 or ci.high < 0.0, level, diffs)
