"""The configuration file: a key renamed since (``alpha_max`` -> ``max_eviction_ratio``) still works."""
import logging


def _yaml(tmp_path, body: str, name="old.yaml"):
    path = tmp_path / name
    path.write_text("/**:\n  ros__parameters:\n" + "".join(f"    {line}\n" for line in body.splitlines()))
    return path


def _warnings(caplog):
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING and r.name == "timebill"]


def test_the_shipped_file_says_max_eviction_ratio():
    from timebill.config import DEFAULTS, load_config

    assert "alpha_max" not in DEFAULTS and load_config()["max_eviction_ratio"] == 0.95
    assert "alpha_max" not in load_config()


def test_a_file_that_still_says_alpha_max_sets_max_eviction_ratio_and_warns_once(tmp_path, caplog):
    from timebill.config import load_config

    path = _yaml(tmp_path, "alpha_max: 0.5\nplanner: paper")
    with caplog.at_level(logging.WARNING, logger="timebill"):
        cfg = load_config(path)
        again = load_config(path)
    assert cfg["max_eviction_ratio"] == again["max_eviction_ratio"] == 0.5 and "alpha_max" not in cfg
    assert cfg["planner"] == "paper"
    said = _warnings(caplog)
    assert len(said) == 1, said
    assert "`alpha_max` is now called `max_eviction_ratio`" in said[0] and str(path) in said[0]


def test_given_both_names_the_new_one_wins_with_a_warning(tmp_path, caplog):
    from timebill.config import load_config

    path = _yaml(tmp_path, "alpha_max: 0.5\nmax_eviction_ratio: 0.7", "both.yaml")
    with caplog.at_level(logging.WARNING, logger="timebill"):
        cfg = load_config(path)
    assert cfg["max_eviction_ratio"] == 0.7 and "alpha_max" not in cfg
    said = _warnings(caplog)
    assert len(said) == 1 and "both are set" in said[0] and "ignoring alpha_max=0.5" in said[0], said


def test_a_nodes_own_section_and_overrides_may_use_the_old_name(tmp_path, caplog):
    from timebill.config import load_config

    path = tmp_path / "node.yaml"
    path.write_text("/**:\n  ros__parameters:\n    max_eviction_ratio: 0.9\n"
                    "gen:\n  ros__parameters:\n    alpha_max: 0.4\n")
    with caplog.at_level(logging.WARNING, logger="timebill"):
        assert load_config(path)["max_eviction_ratio"] == 0.9
        assert load_config(path, node="gen")["max_eviction_ratio"] == 0.4  # the node's own wins, as for any key
        assert load_config(path, overrides={"alpha_max": 0.3})["max_eviction_ratio"] == 0.3


def test_the_renamed_key_reaches_the_estimator(tiny, tmp_path):
    from conftest import slow_time_model
    from timebill.config import load_config
    from timebill.runtime import build_estimator

    tm = slow_time_model().save(tmp_path / "tm.yaml")
    path = _yaml(tmp_path, f"alpha_max: 0.6\ntime_model: {tm}\nlength_predictor: constant")
    assert build_estimator(load_config(path), loaded=tiny, progress=False).max_eviction_ratio == 0.6
