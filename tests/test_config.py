"""One configuration home: every option declared once with its type, default and
help; its environment variable sets it; `novalite config show` says what is in force
and where each value came from, as a settings file that loads back the same."""

from __future__ import annotations

import json
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import pytest

from helpers import NOVALITE, clean_env
from novalite.settings import ConfigError, OptionInfo, explain_settings, load_settings


def _as_env_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return ",".join(str(v) for v in value)
    if isinstance(value, dict):
        return ",".join(f"{k}={v}" for k, v in value.items())
    return str(value)


OPTIONS = [o for o in explain_settings(environ={}) if o.key != "secret"]


def test_every_option_has_help_a_type_and_an_environment_variable() -> None:
    assert len(OPTIONS) > 60
    for o in OPTIONS:
        assert o.help and o.type, o.key
        assert o.env == "NOVALITE_" + o.key.replace(".", "_").upper()


@pytest.mark.parametrize("option", [o for o in OPTIONS if o.value not in (None, "")],
                         ids=lambda o: o.key)
def test_each_environment_variable_sets_its_option(option: OptionInfo) -> None:
    [got] = [o for o in explain_settings(environ={option.env: _as_env_text(option.value)})
             if o.key == option.key]
    assert got.value == option.value
    assert got.source == f"environment variable {option.env}"


def test_an_error_names_the_option_and_where_it_came_from(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(environ={"NOVALITE_SCHEDULER_MAX_ATTEMPTS": "0"})
    assert (info.value.key, info.value.source) == (
        "scheduler.max_attempts", "environment variable NOVALITE_SCHEDULER_MAX_ATTEMPTS")
    assert "must be an integer >= 1" in info.value.message
    config = tmp_path / "bad.toml"
    config.write_text("[scheduler]\nenabled_filters = ['RamFilterr']\n")
    with pytest.raises(ConfigError) as info:
        load_settings(config, environ={})
    assert (info.value.key, info.value.source) == ("scheduler.enabled_filters", f"file {config}")


def test_config_show_says_where_each_value_came_from_and_loads_back(tmp_path: Path) -> None:
    config = tmp_path / "settings.toml"
    config.write_text("report_interval = 5\n[scheduler]\nenabled_filters = ['ComputeFilter']\n")
    env = clean_env(NOVALITE_COMPUTE_HOST_COUNT="3", NOVALITE_SECRET="x" * 32)
    shown = subprocess.run([*NOVALITE, "config", "show", "--config", str(config), "--data-dir",
                            str(tmp_path / "data")], capture_output=True, text=True, env=env,
                           check=False, timeout=60)
    assert shown.returncode == 0, shown.stderr
    out = shown.stdout
    assert f'report_interval = 5    # from file {config}' in out
    assert f'data_dir = "{tmp_path / "data"}"    # from overrides' in out
    assert 'host_count = 3    # from environment variable NOVALITE_COMPUTE_HOST_COUNT' in out
    assert 'log_level = "INFO"    # from defaults' in out
    assert "x" * 32 not in out and "secret: (not shown), from environment variable NOVALITE_SECRET" in out
    # what it prints is a settings file: loaded back, it gives the same settings
    printed = tmp_path / "printed.toml"
    printed.write_text(out)
    tomllib.loads(out)
    again = load_settings(printed, environ={"NOVALITE_SECRET": "x" * 32})
    assert again == load_settings(config, overrides={"data_dir": str(tmp_path / "data")},
                                  environ={"NOVALITE_COMPUTE_HOST_COUNT": "3", "NOVALITE_SECRET": "x" * 32})
    as_json = subprocess.run([*NOVALITE, "config", "show", "--json", "--config", str(config)],
                             capture_output=True, text=True, env=env, check=False, timeout=60)
    assert as_json.returncode == 0, as_json.stderr
    by_key = {o["key"]: o for o in json.loads(as_json.stdout)}
    assert (by_key["compute.host_count"]["value"], by_key["compute.host_count"]["default"]) == (3, 1)
    assert by_key["scheduler.enabled_filters"]["source"] == f"file {config}"


def test_a_bad_value_is_refused_by_config_show_with_its_name() -> None:
    bad = subprocess.run([*NOVALITE, "config", "show"], capture_output=True, text=True,
                         env=clean_env(NOVALITE_QUOTAS_CORES="many"), check=False, timeout=60)
    assert bad.returncode == 2
    assert bad.stderr.strip() == ("error: quotas.cores: expected an integer, got 'many' "
                                  "(from environment variable NOVALITE_QUOTAS_CORES)")
