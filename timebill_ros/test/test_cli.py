"""`timebill` on the command line: bad input fails fast and clearly; a run streams then reports."""
import subprocess
import sys

import pytest

from conftest import PKG_DIR


def timebill(*args, timeout=120, **kw):
    return subprocess.run([sys.executable, "-m", "timebill.cli", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=PKG_DIR, **kw)


@pytest.mark.parametrize("args,match", [
    (["", "--budget", "3"], "prompt is empty"),
    (["hi", "--budget", "-1"], "positive finite"),
    (["hi", "--budget", "nan"], "positive finite"),
    (["hi", "--budget", "2", "--policy", "later"], "unknown overrun policy"),
])
def test_invalid_requests_exit_2_with_the_reason(args, match):
    r = timebill("generate", *args, timeout=60)
    assert r.returncode == 2 and match in r.stderr


def test_a_missing_model_file_is_named(tmp_path):
    r = timebill("generate", "hi", "--budget", "2", "--model", str(tmp_path / "model.gguf"))
    assert r.returncode == 1 and f"model path does not exist: {tmp_path / 'model.gguf'}" in r.stderr


def test_profile_then_generate_streams_the_answer_and_reports_plan_and_outcome(tmp_path):
    tm = tmp_path / "tiny.yaml"
    r = timebill("profile", "--model", "test:tiny", "--max-tokens", "256", "--repeats", "1", "--out", str(tm))
    assert r.returncode == 0, r.stderr
    assert "held-out MAPE" in r.stdout and tm.is_file()
    r = timebill("generate", "Where is the red cup?", "--budget", "5", "--model", "test:tiny", "--time-model", str(tm),
                 "--max-new-tokens", "12")
    assert r.returncode == 0, r.stderr
    assert "plan     prompt" in r.stdout and "eviction ratio" in r.stdout and "12 tokens fit" in r.stdout
    assert "outcome  COMPLETED (max_tokens) | 12 tokens" in r.stdout and "deadline met" in r.stdout


def test_rlp_distill_is_one_command_of_the_main_cli():
    r = timebill("rlp", "distill", "--help", timeout=60)
    assert r.returncode == 0 and "--prompts" in r.stdout and "--model" in r.stdout
    assert "distill" in timebill("--help", timeout=60).stdout


@pytest.mark.parametrize("flag", ["--max-eviction-ratio", "--alpha-max"])
def test_the_cli_reads_the_ceiling_and_the_fixed_ratio_under_either_name(monkeypatch, capsys, flag):
    import timebill.cli as cli

    seen = {}
    monkeypatch.setattr(cli, "cmd_generate", lambda args: seen.update(vars(args)) or 0)
    fixed = "--fixed-eviction-ratio" if flag == "--max-eviction-ratio" else "--fixed-alpha"
    assert cli.main(["generate", "hi", "--budget", "2", flag, "0.3", fixed, "0.5"]) == 0
    assert seen["max_eviction_ratio"] == 0.3 and seen["fixed_eviction_ratio"] == 0.5
    with pytest.raises(SystemExit):
        cli.main(["generate", "--help"])
    shown = capsys.readouterr().out
    assert "--max-eviction-ratio" in shown and "--fixed-eviction-ratio" in shown and "alpha" not in shown


def test_a_profile_from_an_earlier_version_is_refitted_from_its_points_without_measuring(tmp_path, capsys):
    import dataclasses

    import timebill.cli as cli
    from timebill.profiler import fit, fit_prefill
    from timebill.time_model import TimeModel

    pre = [(32, 0.162), (64, 0.213), (128, 0.329), (256, 0.527), (512, 1.024), (1024, 1.924), (2048, 5.377)]
    measured = fit(pre, [(n, 0.009 + 7e-6 * n) for n, _ in pre])
    old = dataclasses.replace(measured, a=7.8e-7, b=8e-4, c=0.25, machine="the old box", date="2026-12-01T04:56:28Z")
    path = old.save(tmp_path / "old.yaml")
    assert cli.main(["profile", "--refit", str(path)]) == 0
    assert "refitted from its measured points" in capsys.readouterr().out
    new = TimeModel.load(path)
    assert (new.a, new.b, new.c) == pytest.approx(fit_prefill(*zip(*pre)))
    assert (new.machine, new.date) == ("the old box", "2026-12-01T04:56:28Z")   # when and where it was measured
    bare = dataclasses.replace(old, fit={})
    assert cli.main(["profile", "--refit", str(bare.save(tmp_path / "bare.yaml"))]) == 1
    assert "keeps no measured points" in capsys.readouterr().err
    assert cli.main(["profile", "--refit", str(tmp_path / "none.yaml")]) == 1
    assert "none.yaml" in capsys.readouterr().err
