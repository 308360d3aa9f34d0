"""The action, service and topic names the nodes were configured with, for the commands that talk
to them from outside (query, estimate, monitor): the same file the nodes read, so a renamed topic
in config/timebill.yaml needs no flag here."""
from __future__ import annotations

NAME_KEYS = ("action_name", "estimate_service", "estimates_topic", "reports_topic")


def configured_names(config_path=None) -> dict:
    from timebill.config import load_config

    cfg = load_config(config_path)
    return {k: cfg[k] for k in NAME_KEYS}
