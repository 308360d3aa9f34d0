"""The execution-time estimator: fitting, sums, persistence and online calibration."""
import numpy as np
import pytest

from timebill.profiler import fit, fit_decode, fit_prefill, fit_warning
from timebill.calibration import MIN_JOBS_FOR_QUANTILE, OnlineCalibration, quantile
from timebill.time_model import TimeModel, kept_positions

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
    with pytest.raises(ValueError, match="not a usable timebill timing model"):
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


def test_calibration_counts_the_periodic_spikes_of_a_served_job_as_time_the_job_takes():
    # Served, every fifth token also sends a feedback message: a median token would not see it,
    # and planned from the median the job's answer would run past the time it was given.
    cal = OnlineCalibration(TRUE, window=8)
    for _ in range(5):
        steps = [TRUE.decode_step(300 + i) * (3.0 if i % 5 == 4 else 1.0) for i in range(40)]
        cal.observe(600, TRUE.prefill(600), 300, steps)
    assert cal.decode_scale == pytest.approx(1.4, rel=0.01)
    assert cal.model.decode(301, 41) == pytest.approx(sum(steps), rel=0.01)  # the same 40 steps


def test_stalls_inside_jobs_move_the_plan_but_do_not_spread_the_speeds_it_is_judged_at():
    # The equally likely speeds (model_at) come from the jobs' median tokens: stalls of different
    # sizes inside otherwise equal jobs would widen them and blur the completion probability.
    cal = OnlineCalibration(TRUE, window=32)
    for stall in range(10):
        steps = [TRUE.decode_step(300 + i) for i in range(40)]
        steps[20] += stall * 0.05 * sum(steps)
        cal.observe(600, TRUE.prefill(600), 300, steps)
    assert cal.decode_scale > 1.1
    assert cal.model_at(0.9).decode_step(400) == pytest.approx(cal.model_at(0.1).decode_step(400))
    assert cal.model_at(0.9).decode_step(400) == pytest.approx(cal.model.decode_step(400))
    # jobs whose tokens themselves ran at different speeds do spread, around the same scale
    for speed in (1.0, 1.2, 1.4, 1.6, 1.8) * 4:
        cal.observe(600, TRUE.prefill(600), 300, [speed * TRUE.decode_step(300 + i) for i in range(40)])
    assert cal.model_at(0.1).decode_step(400) < cal.model.decode_step(400) < cal.model_at(0.9).decode_step(400)


def test_the_prefill_scale_follows_the_prompts_length():
    cal = OnlineCalibration(TRUE, window=32)
    for _ in range(6):  # short prompts prefill at the profile's speed, long ones 1.6x slower
        cal.observe(40, TRUE.prefill(40), 40, [TRUE.decode_step(40 + i) for i in range(10)])
        cal.observe(800, 1.6 * TRUE.prefill(800), 800, [TRUE.decode_step(800 + i) for i in range(10)])
    assert cal.prefill_scale == pytest.approx(1.3)
    assert cal.model.prefill(40) == pytest.approx(TRUE.prefill(40))
    assert cal.model.prefill(760) == pytest.approx(1.6 * TRUE.prefill(760))
    assert cal.model.end_to_end(760, 10) == pytest.approx(1.6 * TRUE.prefill(760) + TRUE.decode(760, 10))
    # no recent prompt near this length: the scale of all recent jobs
    assert cal.model.prefill(5000) == pytest.approx(1.3 * TRUE.prefill(5000))
    # the slow tail and refusals keep the length's shape
    assert cal.model_at(0.9).prefill(760) > cal.model_at(0.9).prefill(40) / TRUE.prefill(40) * TRUE.prefill(760)
    assert cal.for_refusals.prefill(760) == pytest.approx(1.6 * TRUE.prefill(760))


def test_a_prefill_that_has_run_is_timed_as_it_ran_at_every_speed_and_the_rest_modelled():
    cal = OnlineCalibration(TRUE, window=32)
    for _ in range(6):  # recent 40-token prompts prefilled 1.6x slower than the profile
        cal.observe(40, 1.6 * TRUE.prefill(40), 40, [TRUE.decode_step(40 + i) for i in range(10)])
    for tm in (TRUE, cal.model, cal.model_at(0.9), cal.for_refusals):
        ran = tm.with_prefill(40, 0.123)
        assert ran.prefill(40) == 0.123  # not scaled by the length's factor: it is what it took
        assert ran.end_to_end(40, 10) == pytest.approx(0.123 + tm.decode(40, 10))
        assert ran.prefill(41) == tm.prefill(41) and ran.decode_step(50) == tm.decode_step(50)
    assert cal.model.prefill(40) == pytest.approx(1.6 * TRUE.prefill(40))  # the calibration's own model is unchanged


def test_a_prefill_planned_inside_it_adds_what_followed_the_plan_in_the_recent_jobs_nearest_in_length():
    cal = OnlineCalibration(TRUE, window=32)
    assert cal.whole_prefill(40, 0.2) == 0.2  # nothing served yet: the forward pass is all there is
    for tail in (0.011, 0.012, 0.013):  # the plan, evicting and carrying the cache after it
        cal.observe(40, 0.2 + tail, 40, [TRUE.decode_step(40)], forward_s=0.2)
    for tail in (0.044, 0.040, 0.046):
        cal.observe(980, 2.3 + tail, 980, [TRUE.decode_step(980)], forward_s=2.3)
    cal.observe(40, 0.5, 40, [TRUE.decode_step(40)])  # a job planned before its prefill tells nothing
    assert cal.whole_prefill(38, 0.19) == pytest.approx(0.19 + 0.012)
    assert cal.whole_prefill(1000, 2.2) == pytest.approx(2.2 + 0.044)
    cal.observe(40, 1.2, 40, [TRUE.decode_step(40)], forward_s=0.2)  # one stall after the plan
    assert cal.whole_prefill(40, 0.19) == pytest.approx(0.19 + 0.013)  # the newest three: a median leaves it out


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


# --- a timing-model file that cannot be used: named, explained, re-profiled when it is the cache's ----

def _valid_yaml(tmp_path):
    return TRUE.save(tmp_path / "valid.yaml").read_text()


CORRUPT = {
    "empty": (lambda good: "", "it is empty"),
    "truncated in a mapping": (lambda good: good[: good.index("fit: {") + 6], "not valid YAML"),
    "truncated between keys": (lambda good: good[: good.index("  q:")], "'q' is missing"),
    "garbage bytes": (lambda good: b"\x89\xff\xfe\x00\x13garbage", "not text"),
    "not a mapping": (lambda good: "- 1\n- 2\n", "a list, not a mapping"),
    "missing key": (lambda good: good.replace("  q:", "  r:"), "'q' is missing"),
    "wrong type": (lambda good: good.replace("  q: ", "  q: fast # "), "wrong type"),
    "q is NaN": (lambda good: good.replace("  q: ", "  q: .nan # "), "q = nan is not a finite number"),
    "infinite a": (lambda good: good.replace("  a: ", "  a: .inf # "), "a = inf is not a finite number"),
    "negative p": (lambda good: good.replace("  p: ", "  p: -0.0002 # "), "p = -0.0002 is negative"),
    "step in ms, not s": (lambda good: good.replace("  q: ", "  q: 45.0 # "), "a decoding step is predicted to take 45"),
}


@pytest.mark.parametrize("kind", CORRUPT)
def test_an_unusable_timing_model_file_is_refused_naming_the_file_and_the_fault(tmp_path, kind):
    from timebill.time_model import TimeModelError

    make, why = CORRUPT[kind]
    bad = tmp_path / "tm.yaml"
    content = make(_valid_yaml(tmp_path))
    bad.write_bytes(content) if isinstance(content, bytes) else bad.write_text(content)
    with pytest.raises(TimeModelError) as err:
        TimeModel.load(bad)
    assert str(bad) in str(err.value) and why in str(err.value)


def _corrupt_cfg(tmp_path, tiny, named: bool):
    from timebill.runtime import time_model_path

    cfg = {"model": "test:tiny", "cache_dir": str(tmp_path / "cache"), "profile_max_tokens": 256}
    if named:
        cfg["time_model"] = str(tmp_path / "mine.yaml")
    path = time_model_path(cfg, tiny)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(_valid_yaml(tmp_path).replace("  q: ", "  q: .nan # "))
    return cfg, path


def test_a_corrupt_cached_timing_model_is_set_aside_with_a_warning_and_profiled_again(tmp_path, tiny, caplog):
    from timebill.runtime import load_or_profile_time_model

    cfg, path = _corrupt_cfg(tmp_path, tiny, named=False)
    with caplog.at_level("WARNING", logger="timebill"):
        tm = load_or_profile_time_model(cfg, tiny, progress=False, say=lambda m: None)
    assert not tm.problems() and tm.model == tiny.name
    assert TimeModel.load(path) == tm                        # the new one is saved in its place
    assert ".nan" in path.with_name(path.name + ".invalid").read_text()  # the old one is kept aside
    assert any(str(path) in r.getMessage() and "profiling again" in r.getMessage() for r in caplog.records)


def test_a_cached_timing_model_without_the_presss_overhead_is_profiled_again_without_calling_it_damaged(tmp_path, tiny,
                                                                                                     caplog):
    from timebill.runtime import load_or_profile_time_model, time_model_path

    cfg = {"model": "test:tiny", "cache_dir": str(tmp_path / "cache"), "profile_max_tokens": 256, "press": "snapkv"}
    path = time_model_path(cfg, tiny)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(_valid_yaml(tmp_path))
    old = TimeModel.load(path)
    assert old.fit.get("eviction_press") is None            # the premise: a file from before the term
    said = []
    with caplog.at_level("WARNING", logger="timebill"):
        tm = load_or_profile_time_model(cfg, tiny, progress=False, say=said.append)
    assert tm.fit["eviction_press"] == "snapkv" and TimeModel.load(path) == tm
    assert TimeModel.load(path.with_name(path.name + ".old")) == old
    assert any("no eviction overhead for the press snapkv" in m and "profiling again" in m for m in said)
    assert not [r for r in caplog.records if "usable" in r.getMessage()]


def test_a_cached_timing_model_fitted_by_an_earlier_version_is_fitted_again_from_its_points(tmp_path, tiny):
    import dataclasses

    from timebill.profiler import FITTED_FOR, refit
    from timebill.runtime import load_or_profile_time_model, time_model_path

    cfg = {"model": "test:tiny", "cache_dir": str(tmp_path / "cache"), "profile_max_tokens": 256, "press": "snapkv"}
    pre = [(32, 0.162), (64, 0.213), (128, 0.329), (256, 0.527), (512, 1.024)]
    measured = fit(pre, [(n, 0.009 + 7e-6 * n) for n, _ in pre], press="snapkv")
    earlier = dataclasses.replace(measured, a=7.8e-7, b=8e-4, c=0.25,
                                  fit={k: v for k, v in measured.fit.items() if k != "fitted_for"})
    path = time_model_path(cfg, tiny)
    earlier.save(path)
    said = []
    tm = load_or_profile_time_model(cfg, tiny, progress=False, say=said.append)
    assert tm == refit(earlier) and tm.fit["fitted_for"] == FITTED_FOR and TimeModel.load(path) == tm
    assert abs(tm.prefill(32) - 0.162) < 0.01 < abs(earlier.prefill(32) - 0.162)
    assert any("fitted again from its measured points" in m for m in said)
    # one that keeps no points is used as it was fitted
    pointless = dataclasses.replace(earlier, fit={k: v for k, v in earlier.fit.items() if k != "points"})
    pointless.save(path)
    assert load_or_profile_time_model(cfg, tiny, progress=False, say=said.append) == pointless
    # a file the user named is theirs: used as it is
    named = earlier.save(tmp_path / "mine.yaml")
    assert load_or_profile_time_model({**cfg, "time_model": str(named)}, tiny, progress=False, say=said.append) == earlier


def test_a_corrupt_timing_model_the_user_named_stops_start_up_with_the_fix(tmp_path, tiny):
    from timebill.runtime import load_or_profile_time_model
    from timebill.time_model import TimeModelError

    cfg, path = _corrupt_cfg(tmp_path, tiny, named=True)
    with pytest.raises(TimeModelError, match="not a finite number") as err:
        load_or_profile_time_model(cfg, tiny, progress=False, say=lambda m: None)
    assert str(path) in str(err.value) and f"timebill profile --out {path}" in str(err.value)
    assert ".nan" in path.read_text()  # the user's file is left as it was


def test_the_fit_keeps_every_coefficient_non_negative():
    # Flat, noisy timings (a tiny model): plain least squares finds a negative slope.
    n = np.array([16, 32, 64, 128, 256, 384], dtype=float)
    t = np.array([1.9e-3, 1.2e-3, 1.4e-3, 1.1e-3, 1.3e-3, 1.0e-3])
    plain = np.linalg.lstsq(np.stack([n * n, n, np.ones_like(n)], 1), t, rcond=None)[0]
    assert (plain < 0).any()  # the premise: the unconstrained fit goes negative
    a, b, c = fit_prefill(n, t)
    p, q = fit_decode(n, t)
    assert min(a, b, c, p, q) >= 0
    assert not TimeModel(a, b, c, p, q).problems()
    # Still the best non-negative fit of the relative errors: no worse than the best constant, the
    # simplest fit allowed.
    const = np.full_like(t, (1 / t).sum() / (1 / t ** 2).sum())
    assert (((a * n * n + b * n + c - t) / t) ** 2).sum() <= (((const - t) / t) ** 2).sum() + 1e-12


def test_the_profile_is_fitted_for_relative_error_so_short_prompts_are_timed_as_well_as_long_ones():
    # The embedded model's llama.cpp prefill profile on this machine (2026-12-01): fixed costs
    # make short prompts slower than a quadratic through the long ones allows.
    pts = [(32, 0.162), (64, 0.213), (128, 0.329), (192, 0.392), (256, 0.527), (384, 0.724), (512, 1.024),
           (640, 1.327), (768, 1.539), (1024, 1.924), (1280, 2.16), (1536, 3.045), (2048, 5.377)]
    n, t = np.array([p[0] for p in pts], float), np.array([p[1] for p in pts])
    a, b, c = fit_prefill(n, t)
    rel = np.abs(a * n * n + b * n + c - t) / t
    assert rel[:2].max() < 0.05 and rel.mean() < 0.08
    plain = np.linalg.lstsq(np.stack([n * n, n, np.ones_like(n)], 1), t, rcond=None)[0]
    assert (np.abs(np.stack([n * n, n, np.ones_like(n)], 1) @ plain - t) / t)[:2].min() > 0.4  # the premise
    # The eviction overhead is a difference of timings, zero on a short prompt: fitted plainly.
    tm = fit(pts, [(x, 0.01 + 1e-6 * x) for x, _ in pts], evict_pts=[(32, 0.0), (512, 0.02), (2048, 0.07)])
    assert tm.r > 0 and not tm.problems()


def test_eviction_costs_its_profiled_overhead_only_when_a_press_evicts(tmp_path):
    tm = TimeModel(a=0.0, b=1e-3, c=0.01, p=1e-5, q=0.005, r=5e-5, s=0.02)
    assert tm.end_to_end(1000, 10, 0.0) == pytest.approx(tm.prefill(1000) + tm.decode(1000, 10))
    assert tm.end_to_end(1000, 10, 0.5) == pytest.approx(tm.prefill(1000) + 0.07 + tm.decode(500, 10))
    assert tm.scaled(2.0, 1.0).evict_overhead(1000, 0.5) == pytest.approx(0.14)   # it is prefill work
    assert TimeModel.load(tm.save(tmp_path / "tm.yaml")) == tm
    old = tmp_path / "old.yaml"
    old.write_text((tmp_path / "tm.yaml").read_text().split("eviction:")[0] + "fit: {}\n")
    assert TimeModel.load(old).evict_overhead(1000, 0.5) == 0.0                   # files from before: no term
    assert any("r = " in p for p in TimeModel(a=0, b=1e-3, c=0.01, p=1e-5, q=0.005, r=-1e-5).problems())


def test_an_evicted_jobs_prefill_teaches_the_calibration_net_of_the_eviction_overhead():
    from timebill.calibration import OnlineCalibration

    tm = TimeModel(a=0.0, b=1e-3, c=0.0, p=0.0, q=0.01, r=0.0, s=0.1)
    cal = OnlineCalibration(tm)
    cal.observe(100, 0.2, 50, [0.01])      # 0.1 s prefill + 0.1 s overhead, exactly as modelled
    assert cal.prefill_scale == pytest.approx(1.0)


def test_the_profiler_measures_the_presss_overhead(tiny):
    from timebill.profiler import profile

    tm = profile(tiny, lengths=(64, 128, 256), repeats=1, decode_steps=2, progress=False, press="snapkv")
    assert tm.fit["eviction_press"] == "snapkv" and len(tm.fit["points"]["eviction"]) == 3
    assert tm.r >= 0 and tm.s >= 0
    assert profile(tiny, lengths=(64, 128), repeats=1, decode_steps=2, progress=False, press=None).r == 0.0


# --- the served speed across restarts -------------------------------------------------------------

def _served(cal: OnlineCalibration, decode_scale: float, prefill_scale: float, jobs: int = 5):
    for _ in range(jobs):
        cal.observe(200, cal.base.prefill(200) * prefill_scale, 200,
                    [cal.base.decode_step(200 + i) * decode_scale for i in range(16)])


def test_a_restart_plans_from_the_speed_measured_while_serving(tmp_path):
    from timebill.served_speed import recall, remember, served_path

    serving = OnlineCalibration(TRUE)
    _served(serving, decode_scale=1.8, prefill_scale=1.2)
    path = served_path(tmp_path / "model.yaml")
    remember(path, serving)
    restarted = OnlineCalibration(TRUE)
    said = recall(path, restarted)
    assert "1.80x the profiled decoding time" in said and "1.20x its prefill time" in said
    assert restarted.model.decode_step(300) == pytest.approx(serving.model.decode_step(300))
    assert restarted.model.prefill(500) == pytest.approx(serving.model.prefill(500))
    assert restarted.ratios() == serving.ratios()  # the scale's and the spread's ratios both
    # the prefill's dependence on the prompt's length is remembered too
    for _ in range(4):
        serving.observe(1500, 2.0 * TRUE.prefill(1500), 1500, [TRUE.decode_step(1500)])
    remember(path, serving)
    again = OnlineCalibration(TRUE)
    recall(path, again)
    assert again.model.prefill(1400) == pytest.approx(serving.model.prefill(1400)) == pytest.approx(2.0 * TRUE.prefill(1400))
    # and what followed the plan in prefills planned inside them
    serving.observe(40, 0.212, 40, [TRUE.decode_step(40)], forward_s=0.2)
    remember(path, serving)
    third = OnlineCalibration(TRUE)
    recall(path, third)
    assert third.whole_prefill(40, 0.19) == pytest.approx(serving.whole_prefill(40, 0.19)) == pytest.approx(0.202)
    # It goes on learning from there, in the same bounded window.
    _served(restarted, decode_scale=1.0, prefill_scale=1.0, jobs=40)
    assert restarted.decode_scale == pytest.approx(1.0)
    assert len(restarted.ratios()["decode"]) == 32



def test_the_served_speed_is_written_at_most_every_period_and_the_rest_at_the_flush(tmp_path):
    # A write is on the path of the goal whose result waits for it: not after every job.
    from timebill.served_speed import Keeper, recall, served_path

    serving = OnlineCalibration(TRUE)
    path = served_path(tmp_path / "model.yaml")
    keeper = Keeper(path, serving, warn=print, period=60.0)
    _served(serving, decode_scale=1.5, prefill_scale=1.0, jobs=1)
    keeper.keep()
    first = path.read_text()
    _served(serving, decode_scale=1.5, prefill_scale=1.0, jobs=3)
    keeper.keep()
    assert path.read_text() == first  # within the period: kept for later
    keeper.flush()
    assert path.read_text() != first
    restarted = OnlineCalibration(TRUE)
    recall(path, restarted)
    assert len(restarted.ratios()["decode"]) == len(serving.ratios()["decode"])

def test_a_served_speed_of_another_timing_model_or_a_damaged_file_is_not_used(tmp_path):
    from timebill.served_speed import recall, remember, served_path

    path = served_path(tmp_path / "model.yaml")
    assert recall(path, OnlineCalibration(TRUE)) == ""                    # none yet: nothing to say
    serving = OnlineCalibration(TRUE)
    _served(serving, decode_scale=2.0, prefill_scale=2.0)
    remember(path, serving)
    reprofiled = OnlineCalibration(TimeModel(a=TRUE.a, b=TRUE.b, c=TRUE.c, p=TRUE.p, q=TRUE.q * 1.5))
    assert "another timing model, not used" in recall(path, reprofiled)
    assert reprofiled.decode_scale == 1.0
    for damaged in ("{", '{"timing_model": 3}', "[]"):
        path.write_text(damaged)
        cal = OnlineCalibration(TRUE)
        assert "unreadable" in recall(path, cal) and cal.decode_scale == 1.0
    cal = OnlineCalibration(TRUE)
    cal.seed([float("nan"), -1.0, 1.5], [float("inf"), 0.0, "x", 2.0],    # only sane ratios are taken
             prefill_tail=[[40, 0.012], [0, 0.01], [40, -1.0], "x", [40.5, 0.01], [980, 0.044]])
    assert cal.ratios() == {"prefill": [1.5], "decode": [2.0], "prefill_tokens": [0], "decode_total": [2.0],
                            "prefill_tail": [[40, 0.012], [980, 0.044]]}


def test_a_served_speed_file_from_before_whole_decoding_times_plans_from_its_median_tokens():
    # Such a file's median tokens stand in for the whole times: the first job after the restart is
    # one of the window, not the scale alone.
    cal = OnlineCalibration(TRUE)
    cal.seed([1.0] * 8, [1.5] * 8)
    assert cal.decode_scale == 1.5
    _served(cal, decode_scale=3.0, prefill_scale=1.0, jobs=1)
    assert cal.decode_scale == 1.5
    assert len(cal.ratios()["decode_total"]) == len(cal.ratios()["decode"]) == 9


def test_only_a_node_starts_from_the_served_speed(tmp_path, tiny):
    from timebill.runtime import build_estimator, served_speed_path
    from timebill.served_speed import remember

    cfg = {"model": "test:tiny", "cache_dir": str(tmp_path / "cache"), "profile_max_tokens": 256,
           "length_predictor": "constant"}
    first = build_estimator(cfg, tiny, progress=False, say=lambda m: None, served=True)
    _served(first.calibration, decode_scale=1.7, prefill_scale=1.0)
    remember(served_speed_path(cfg, tiny), first.calibration)
    said = []
    node = build_estimator(cfg, tiny, progress=False, say=said.append, served=True)
    assert node.calibration.decode_scale == pytest.approx(1.7) and any("served speed" in m for m in said)
    one_off = build_estimator(cfg, tiny, progress=False, say=lambda m: None)    # e.g. `timebill generate`
    assert one_off.calibration.decode_scale == 1.0
