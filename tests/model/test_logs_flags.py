"""Structured logging and the flag vocabulary."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from model.flags import FLAG_NAMES, UnknownFlagError, flag_index


def test_flag_vocabulary_is_stable_and_indexed() -> None:
    assert len(FLAG_NAMES) == len(set(FLAG_NAMES)) >= 7
    assert flag_index(FLAG_NAMES[3]) == 3
    with pytest.raises(UnknownFlagError, match="logo_font"):
        flag_index("glitter")


def test_logging_one_json_line_per_event() -> None:
    code = (
        "import logging; from model.logs import setup_logging, log_event;"
        "setup_logging(); log_event(logging.getLogger('t'), 'bundle_loaded', sha256='ab', n=3);"
        "logging.getLogger('t').debug('hidden')"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={"AUTHLENS_LOG_LEVEL": "INFO", "PATH": ""},
    )
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1
    entry = json.loads(lines[0])
    assert (
        entry["event"] == "bundle_loaded"
        and entry["sha256"] == "ab"
        and entry["n"] == 3
        and entry["level"] == "info"
    )


def test_logging_refuses_unknown_level() -> None:
    from model.logs import setup_logging

    with pytest.raises(ValueError, match="DEBUG, INFO"):
        setup_logging(level="chatty")


def test_a_later_setup_without_a_level_keeps_the_chosen_one() -> None:
    code = (
        "import logging; from model.logs import setup_logging;"
        "setup_logging('WARNING'); setup_logging();"  # what a subcommand does after --log-level
        "logging.getLogger('t').info('hidden'); logging.getLogger('t').warning('shown')"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env={"PATH": ""}
    )
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and json.loads(lines[0])["event"] == "shown"
