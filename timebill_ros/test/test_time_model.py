"""The execution-time estimator: fitting, sums, persistence and online calibration."""
import numpy as np
import pytest

from timebill.profiler import fit, fit_decode, fit_prefill, fit_warning
from timebill.time_model import MIN_JOBS_FOR_QUANTILE, OnlineCalibration, TimeModel, kept_positions, quantile

TRUE = TimeModel(a=3e-7, b=1.2e-3, c=0.03, p=5e-6, q=0.04)


def test_least_squares_recovers_known_coefficients_from_noisy_points():
    rng = np.random.default_rng(0)
    n = np.array([32, 64, 128, 256, 512, 768, 1024, 1536, 2048, 3072, 4096])
    t = np.array([TRUE.prefill(x) for x in n]) * rng.normal(1.0, 0.005, len(n))
    a, b, c = fit_prefill(n, t)
    assert (a, b, c) == pytest.approx((TRUE.a, TRUE.b, TRUE.c), rel=0.1, abs=0.01)
    p, q = fit_decode(n, [TRUE.decode_step(x) for x in n])
    assert (p, q) == pytest.approx((TRUE.p, TRUE.q), rel=1e-6)


def test_fit_reports_heldout_error_and_r2_and_keeps_its_points():
    pre = [(n, TRUE.prefill(n)) for n in (64, 128, 256, 512, 1024, 2048)]
    dec = [(n, TRUE.decode_step(n)) for n in (64, 128, 256, 512, 1024, 2048)]
    tm = fit(pre, dec, model_name="m", threads=2)
    assert tm.fit["prefill_heldout_mape_pct"] < 1e-6 and tm.fit["decode_heldout_mape_pct"] < 1e-6
    assert tm.fit["prefill_r2"] == pytest.approx(1.0) and tm.fit["decode_r2"] == pytest.approx(1.0)
    assert len(tm.fit["points"]["prefill"]) == 6
    assert tm.model == "m" and tm.machine and tm.date


def test_decode_sum_equals_the_sum_of_its_steps():
    kv, n = 700, 50
    assert TRUE.decode(kv, n) == pytest.approx(sum(TRUE.decode_step(kv + i) for i in range(n - 1)))
    assert TRUE.decode(kv, 1) == 0.0  # the first token comes with the prefill


def test_end_to_end_uses_the_cache_left_after_eviction():
    # kvpress keeps int(N * (1 - ratio)) positions (tested against the real presses in test_llamacpp_backend.py)
    assert kept_positions(1000, 0.5) == 500 and kept_positions(1001, 0.5) == 500 and kept_positions(135, 0.75) == 33
    assert TRUE.end_to_end(1000, 20, 0.5) == pytest.approx(TRUE.prefill(1000) + TRUE.decode(500, 20))
    assert TRUE.end_to_end(1000, 20, 0.9) < TRUE.end_to_end(1000, 20, 0.0)


def test_save_and_load_round_trip_with_model_machine_and_date(tmp_path):
    tm = fit([(n, TRUE.prefill(n)) for n in (64, 256, 1024, 2048)], [(n, TRUE.decode_step(n)) for n in (64, 256, 1024, 2048)],
             model_name="SmolLM2-135M-Instruct", threads=2)
    back = TimeModel.load(tm.save(tmp_path / "tm.yaml"))
    assert back == tm
    text = (tmp_path / "tm.yaml").read_text()
    assert "SmolLM2-135M-Instruct" in text and "machine:" in text and "date:" in text


def test_loading_a_missing_or_foreign_file_says_what_is_wrong(tmp_path):
    with pytest.raises(FileNotFoundError, match="timebill profile"):
        TimeModel.load(tmp_path / "nope.yaml")
    (tmp_path / "x.yaml").write_text("hello: 1\n")
    with pytest.raises(ValueError, match="not a timebill timing model"):
        TimeModel.load(tmp_path / "x.yaml")


def test_calibration_follows_a_uniformly_slower_machine():
    cal = OnlineCalibration(TRUE, window=8)
    for _ in range(5):
        steps = [1.5 * TRUE.decode_step(300 + i) for i in range(40)]
        cal.observe(600, 1.3 * TRUE.prefill(600), 300, steps)
    assert cal.decode_scale == pytest.approx(1.5) and cal.prefill_scale == pytest.approx(1.3)
    assert cal.model.decode_step(500) == pytest.approx(1.5 * TRUE.decode_step(500))
    # The error of the predictions in force shrinks once the correction is learned.
    assert cal.errors()["decode_step_mape_pct"] < 20


def test_one_outlier_job_moves_nothing_and_memory_is_bounded():
    cal = OnlineCalibration(TRUE, window=8)
    for _ in range(6):
        cal.observe(600, TRUE.prefill(600), 300, [TRUE.decode_step(300 + i) for i in range(20)])
    cal.observe(600, 50 * TRUE.prefill(600), 300, [50 * TRUE.decode_step(300 + i) for i in range(20)])
    assert cal.decode_scale == pytest.approx(1.0) and cal.prefill_scale == pytest.approx(1.0)
    for _ in range(100):
        cal.observe(600, TRUE.prefill(600), 300, [TRUE.decode_step(300)])
    assert cal.errors()["jobs"] == 8


def test_a_quantile_model_plans_with_the_slow_tail_of_recent_jobs():
    cal = OnlineCalibration(TRUE, window=32)
    speeds = [0.9, 1.0, 1.1, 1.0, 1.3, 0.95, 1.05, 1.2, 1.0, 1.4]
    for i, k in enumerate(speeds[:MIN_JOBS_FOR_QUANTILE - 1]):
        cal.observe(600, k * TRUE.prefill(600), 300, [k * TRUE.decode_step(300 + j) for j in range(20)])
    # Too few jobs to measure a spread: the median correction.
    assert cal.model_at(0.9).decode_step(400) == pytest.approx(cal.model.decode_step(400))
    for k in speeds[MIN_JOBS_FOR_QUANTILE - 1:]:
        cal.observe(600, k * TRUE.prefill(600), 300, [k * TRUE.decode_step(300 + j) for j in range(20)])
    p90 = float(np.quantile(speeds, 0.9))
    assert cal.model_at(0.9).decode_step(400) == pytest.approx(p90 * TRUE.decode_step(400))
    assert cal.model_at(0.9).prefill(1000) == pytest.approx(p90 * TRUE.prefill(1000))
    assert cal.model_at(0.5) is cal.model
    with pytest.raises(ValueError):
        cal.model_at(1.0)


def test_quantile_interpolates_like_numpy():
    xs = [3.0, 1.0, 4.0, 1.5, 9.0, 2.6]
    for q in (0.0, 0.1, 0.5, 0.9, 1.0):
        assert quantile(xs, q) == pytest.approx(float(np.quantile(xs, q)))


def test_a_poor_fit_is_flagged_and_a_good_one_is_not():
    good = fit([(n, TRUE.prefill(n)) for n in (64, 128, 256, 512, 1024, 2048)],
               [(n, TRUE.decode_step(n)) for n in (64, 128, 256, 512, 1024, 2048)])
    assert fit_warning(good) == ""
    # Timings from a busy machine: random multi-x slowdowns.
    noisy = [1.0, 3.0, 0.8, 4.0, 1.2, 2.5]
    bad = fit([(n, TRUE.prefill(n) * k) for n, k in zip((64, 128, 256, 512, 1024, 2048), noisy)],
              [(n, TRUE.decode_step(n) * k) for n, k in zip((64, 128, 256, 512, 1024, 2048), noisy)])
    assert "fits poorly" in fit_warning(bad)
