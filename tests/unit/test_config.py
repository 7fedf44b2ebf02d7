"""Settings come from flags, then AGENTSTORE_* variables, then defaults, and are validated."""

from __future__ import annotations

from datetime import timedelta

import pytest

from agentstore.cli import build_parser, load_settings


def settings_from(argv: list[str], environ: dict[str, str] | None = None) -> object:
    arguments = build_parser().parse_args(["serve", *argv])
    return load_settings(vars(arguments), environ or {})


def test_defaults_apply_without_flags_or_environment() -> None:
    settings = settings_from([])
    assert settings.listen == "127.0.0.1:50051"  # type: ignore[attr-defined]
    assert settings.database_url is None  # type: ignore[attr-defined]


def test_a_flag_beats_the_environment_which_beats_the_default() -> None:
    environ = {"AGENTSTORE_LISTEN": "0.0.0.0:7000", "AGENTSTORE_REAPER_INTERVAL": "5m"}
    from_env = settings_from([], environ)
    assert from_env.listen == "0.0.0.0:7000"  # type: ignore[attr-defined]
    assert from_env.reaper_interval == timedelta(minutes=5)  # type: ignore[attr-defined]
    from_flag = settings_from(["--listen", "127.0.0.1:7001"], environ)
    assert from_flag.listen == "127.0.0.1:7001"  # type: ignore[attr-defined]


def test_sizes_and_durations_take_units() -> None:
    settings = settings_from(["--max-state-bytes", "1MiB", "--shutdown-grace", "500ms"])
    assert settings.max_state_bytes == 1024 * 1024  # type: ignore[attr-defined]
    assert settings.shutdown_grace == timedelta(milliseconds=500)  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("argv", "environ", "named"),
    [
        (["--listen", "nonsense"], {}, "--listen / AGENTSTORE_LISTEN"),
        (
            [],
            {"AGENTSTORE_REAPER_INTERVAL": "soon"},
            "--reaper-interval / AGENTSTORE_REAPER_INTERVAL",
        ),
        (["--max-id-length", "0"], {}, "--max-id-length / AGENTSTORE_MAX_ID_LENGTH"),
        (["--database-url", "not a url"], {}, "--database-url / AGENTSTORE_DATABASE_URL"),
        (["--log-level", "LOUD"], {}, "--log-level / AGENTSTORE_LOG_LEVEL"),
    ],
)
def test_bad_values_stop_start_up_naming_flag_and_variable(
    argv: list[str], environ: dict[str, str], named: str
) -> None:
    with pytest.raises(SystemExit) as caught:
        settings_from(argv, environ)
    assert named in str(caught.value)
    assert str(caught.value).startswith("agentstore: invalid")


def test_the_readme_documents_every_setting() -> None:
    from pathlib import Path

    from agentstore.config import Settings, env_name, flag_name

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    missing = [
        name
        for name in Settings.model_fields
        if f"`{flag_name(name)}` | `{env_name(name)}`" not in readme
    ]
    assert not missing, f"README's configuration table lacks {missing}"
