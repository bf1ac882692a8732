"""experiments/stats.py and the table/plot helpers of runlib.py: the CIs and paired tests behind the sweep tables."""
import json
import math
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "experiments"))
import runlib  # noqa: E402
from stats import betainc, mean_ci, paired_difference, t_cdf, t_quantile, t_two_sided_p  # noqa: E402

scipy_stats = pytest.importorskip("scipy.stats")  # a dev extra: the code itself never imports scipy

DFS = (1, 2, 4, 9, 30)
PROBS = (1e-6, 0.001, 0.01, 0.025, 0.05, 0.1, 0.3, 0.5, 0.7, 0.9, 0.95, 0.975, 0.99, 0.999, 1 - 1e-6)
TS = (-40.0, -6.0, -2.5, -1.0, -0.2, 0.0, 1e-8, 0.2, 1.0, 2.5, 6.0, 40.0, 1e5)


@pytest.mark.parametrize("df", DFS)
def test_t_quantile_matches_scipy(df):
    for p in PROBS:
        assert t_quantile(p, df) == pytest.approx(scipy_stats.t.ppf(p, df), rel=1e-9, abs=1e-6), p


@pytest.mark.parametrize("df", DFS)
def test_t_cdf_and_two_sided_p_match_scipy(df):
    for t in TS:
        assert t_cdf(t, df) == pytest.approx(scipy_stats.t.cdf(t, df), abs=1e-6), t
        # p-values far in the tail are compared relatively: 1e-6 absolute would accept any tiny number
        assert t_two_sided_p(t, df) == pytest.approx(2 * scipy_stats.t.sf(abs(t), df), rel=1e-6, abs=1e-12), t


def test_t_closed_forms_checked_by_hand():
    # df=1 is the Cauchy distribution: F(t) = 1/2 + atan(t)/pi, so the 97.5 % point is tan(0.475 pi) = 12.7062...
    assert t_cdf(1.0, 1) == pytest.approx(0.75, abs=1e-12)
    assert t_quantile(0.975, 1) == pytest.approx(math.tan(0.475 * math.pi), rel=1e-12)
    # df=2: F(t) = 1/2 + t / (2 sqrt(2 + t^2)); inverted, t = (2p - 1) / sqrt(2 p (1 - p)) = 4.302652... at p = 0.975
    assert t_cdf(2.0, 2) == pytest.approx(0.5 + 2 / (2 * math.sqrt(6)), abs=1e-12)
    assert t_quantile(0.975, 2) == pytest.approx(0.95 / math.sqrt(2 * 0.975 * 0.025), rel=1e-12)
    assert t_quantile(0.5, 7) == 0.0 and t_quantile(1.0, 3) == math.inf and t_quantile(0.0, 3) == -math.inf
    assert t_cdf(math.inf, 3) == 1.0 and t_cdf(-math.inf, 3) == 0.0
    with pytest.raises(ValueError):
        t_quantile(1.5, 3)


def test_betainc_matches_scipy_and_the_uniform_case():
    from scipy.special import betainc as scipy_betainc

    for a, b, x in [(0.5, 0.5, 0.3), (2, 3, 0.9), (10, 0.5, 0.99), (0.1, 20, 0.001), (50, 50, 0.5), (15, 4.5, 0.2)]:
        assert betainc(a, b, x) == pytest.approx(scipy_betainc(a, b, x), abs=1e-12)
    assert betainc(1, 1, 0.37) == pytest.approx(0.37, abs=1e-15)  # I_x(1, 1) = x
    assert betainc(2, 3, 0.0) == 0.0 and betainc(2, 3, 1.0) == 1.0


def test_mean_ci_against_scipy_and_by_hand():
    values = [91.2, 84.7, 99.0, 88.1, 95.5]
    ci = mean_ci(values)
    low, high = scipy_stats.t.interval(0.95, len(values) - 1, loc=scipy_stats.tmean(values), scale=scipy_stats.sem(values))
    assert (ci.n, ci.low, ci.high) == (5, pytest.approx(low, abs=1e-9), pytest.approx(high, abs=1e-9))
    assert ci.half_width == pytest.approx((ci.high - ci.low) / 2) and ci.std == pytest.approx(scipy_stats.tstd(values))
    # [1, 3]: mean 2, std sqrt(2), half-width t_{0.975, 1} * sqrt(2) / sqrt(2) = tan(0.475 pi) = 12.706
    two = mean_ci([1.0, 3.0])
    assert two.mean == 2.0 and two.half_width == pytest.approx(math.tan(0.475 * math.pi), rel=1e-12)
    assert mean_ci([4.0, 4.0, 4.0]).half_width == 0.0


def test_mean_ci_of_one_or_no_value_is_nan_not_an_error():
    one = mean_ci([42.0])
    assert one.n == 1 and one.mean == 42.0 and all(math.isnan(v) for v in (one.std, one.half_width, one.low, one.high))
    none = mean_ci([])
    assert none.n == 0 and math.isnan(none.mean)
    assert json.loads(json.dumps(one.as_dict()))["half_width"] is None  # nan would be written as NaN, not JSON


def test_paired_difference_by_hand():
    # differences 2, 1, 4: mean 7/3, variance ((1/3)^2 + (4/3)^2 + (5/3)^2) / 2 = 7/3, standard error sqrt(7/9),
    # t = (7/3) / sqrt(7/9) = sqrt(7), df 2. With the df=2 CDF above, p = 1 - t / sqrt(2 + t^2) = 1 - sqrt(7)/3 = 0.1181;
    # the CI is 7/3 ± 4.302653 * sqrt(7/9) = 7/3 ± 3.7946, which contains 0: not distinguishable.
    d = paired_difference({0: 10.0, 1: 12.0, 2: 14.0}, {0: 12.0, 1: 13.0, 2: 18.0})
    assert d.n == 3 and d.mean == pytest.approx(7 / 3)
    assert d.p == pytest.approx(1 - math.sqrt(7) / 3, rel=1e-12)
    half = 0.95 / math.sqrt(2 * 0.975 * 0.025) * math.sqrt(7 / 9)
    assert (d.low, d.high) == (pytest.approx(7 / 3 - half), pytest.approx(7 / 3 + half))
    assert not d.distinguishable and d.differences == {0: 2.0, 1: 1.0, 2: 4.0}


def test_paired_difference_matches_scipy_ttest_rel():
    base = {0: 21.3, 1: 5.2, 2: 40.1, 3: 18.0, 4: 30.6}
    other = {0: 25.9, 1: 9.8, 2: 41.0, 3: 24.4, 4: 33.3}
    d = paired_difference(base, other)
    ref = scipy_stats.ttest_rel([other[s] for s in range(5)], [base[s] for s in range(5)])
    ci = ref.confidence_interval(0.95)
    assert d.p == pytest.approx(ref.pvalue, rel=1e-9)
    assert (d.low, d.high) == (pytest.approx(ci.low, abs=1e-9), pytest.approx(ci.high, abs=1e-9))
    assert d.distinguishable == (d.p < 0.05) and d.distinguishable  # the CI excludes 0 exactly when p < 1 - level


def test_paired_difference_pairs_by_seed_and_uses_only_common_seeds():
    base = {0: 10.0, 1: 20.0, 2: 30.0, 3: 99.0}
    other = {2: 31.5, 0: 11.0, 1: 21.2, 7: -50.0}  # another order, a seed the baseline lacks and vice versa
    d = paired_difference(base, other)
    assert d.n == 3 and d.differences == {0: 1.0, 1: pytest.approx(1.2), 2: 1.5}
    assert d.p == pytest.approx(scipy_stats.ttest_rel([11.0, 21.2, 31.5], [10.0, 20.0, 30.0]).pvalue, rel=1e-9)


def test_paired_difference_with_fewer_than_two_common_seeds():
    none = paired_difference({0: 1.0, 1: 2.0}, {2: 3.0, 3: 4.0})
    assert none.n == 0 and math.isnan(none.mean) and math.isnan(none.p) and not none.distinguishable
    one = paired_difference({0: 1.0, 1: 2.0}, {1: 5.0})
    assert one.n == 1 and one.mean == 3.0 and math.isnan(one.p) and math.isnan(one.low) and not one.distinguishable
    assert runlib.paired_cells(none, 2)[0] == "n/a (no common seed)"
    assert runlib.paired_cells(one, 1) == ["+3.00 [n/a]", "n/a", "not distinguishable at this scale"]


def test_paired_difference_with_identical_seed_differences_is_the_t_test_limit():
    same = paired_difference({0: 1.0, 1: 2.0}, {0: 1.0, 1: 2.0})
    assert same.mean == 0.0 and math.isnan(same.p) and not same.distinguishable
    shifted = paired_difference({0: 1.0, 1: 2.0, 2: 4.0}, {0: 2.0, 1: 3.0, 2: 5.0})
    assert shifted.p == 0.0 and shifted.distinguishable  # scipy: t = inf, p = 0


def runs(rsums: dict[int, float]) -> dict[int, dict]:
    return {s: {"rsum": v, "i2t_r1": v / 10} for s, v in rsums.items()}


def test_markdown_table_cells_and_verdicts():
    rows = [runs({0: 10.0, 1: 12.0, 2: 14.0}), runs({0: 20.0, 1: 22.5, 2: 24.0}), runs({0: 12.0, 1: 13.0, 2: 18.0}),
            runs({5: 30.0})]
    lines = runlib.markdown_table(["itc", "better", "noisy", "lone"], rows, ("i2t_r1", "rsum"), baseline=0,
                                  baseline_label="`1_itc`")
    assert lines[0] == "| row | I2T R1 | RSUM | Δ RSUM vs `1_itc` [95 % CI] | p | verdict |"
    cells = {line.split(" | ")[0][2:]: line.strip("| ").split(" | ") for line in lines[2:]}
    assert cells["itc"][2:] == ["12.00 ± 4.97", "-", "-", "baseline"]  # t_{0.975,2} * 2 / sqrt(3) = 4.968
    assert cells["better"][-1] == "distinguishable" and cells["better"][-3].startswith("+10.17 [")
    assert cells["noisy"][-3:] == ["+2.33 [-1.46, +6.13]", "0.118", "not distinguishable at this scale"]
    assert cells["lone"][1:3] == ["3.00 ± n/a", "30.00 ± n/a"] and cells["lone"][-3] == "n/a (no common seed)"
    assert runlib.verdict(None) == "baseline"


def test_ci_cell_formats():
    assert runlib.ci_cell([]) == "-" and runlib.ci_cell([5.0]) == "5.00 ± n/a"
    assert runlib.ci_cell([1.0, 3.0]) == "2.00 ± 12.71"


def test_plot_writes_png_with_and_without_the_paired_panel(tmp_path, recwarn):
    rows = [runs({0: 10.0, 1: 12.0, 2: 14.0}), runs({0: 20.0, 1: 22.5, 2: 24.0}), runs({1: 30.0}), runs({0: 3.0, 1: 5.0})]
    labels = ["baseline", "better", "one seed", "other split"]
    for name, kwargs in [("paired.png", {"baseline": 0, "comparable": [True, True, True, False]}), ("plain.png", {})]:
        runlib.plot_rsum(tmp_path / name, labels, rows, "RSUM", **kwargs)
        data = (tmp_path / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000
    assert not [w for w in recwarn if "missing from" in str(w.message)]  # every glyph (Δ, ◆, ±) is in the font
