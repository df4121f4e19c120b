"""User settings: the `Settings` dataclass and `config.toml` load/save.

`config.toml` lives in `paths.config_dir()` and remembers the last model,
preset, session and theme, plus key rebindings:

    model = "shakespeare-mini"
    preset = "creative"
    session = "9f0c..."
    theme = "gptterm-dark"
    sidebar = true

    [keys]
    new_session = "ctrl+n"
    cycle_preset = "f2,ctrl+right"

Loading never raises: a broken file or field gives one problem line each (the UI
shows them in a notification) and the defaults for what could not be read.
Stdlib + tomli_w only (no textual, no torch).
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gptterm import paths

CONFIG_NAME = "config.toml"
_STRINGS = ("model", "preset", "session", "theme")


@dataclass
class Settings:
    """What gptterm remembers between runs; None means "use the default"."""

    model: str | None = None
    preset: str | None = None
    session: str | None = None
    theme: str | None = None
    sidebar: bool = True
    keys: dict[str, str] = field(default_factory=dict)  # action id -> "key,key"


def config_path() -> Path:
    return paths.config_dir() / CONFIG_NAME


def load_settings(path: Path | None = None) -> tuple[Settings, list[str]]:
    """Read `config.toml`.

    Returns:
        (settings, one line per problem). A missing file is not a problem.
    """
    path = path or config_path()
    settings = Settings()
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return settings, []
    except (OSError, UnicodeDecodeError) as exc:
        return settings, [f"{path}: cannot read: {exc}"]
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        return settings, [f"{path}: not valid TOML: {exc}"]
    problems: list[str] = []
    for key, value in data.items():
        if key in _STRINGS:
            if isinstance(value, str) and value:
                setattr(settings, key, value)
            else:
                problems.append(f"{path}: {key} = {value!r}: expected a non-empty string")
        elif key == "sidebar":
            if isinstance(value, bool):
                settings.sidebar = value
            else:
                problems.append(f"{path}: sidebar = {value!r}: expected true or false")
        elif key == "keys":
            if not isinstance(value, dict):
                problems.append(f"{path}: keys: expected a table of action = \"key\"")
                continue
            for action, keys in value.items():
                if isinstance(keys, list) and all(isinstance(k, str) for k in keys):
                    keys = ",".join(keys)
                if isinstance(keys, str) and keys.strip():
                    settings.keys[action] = keys.replace(" ", "")
                else:
                    problems.append(
                        f"{path}: keys.{action} = {keys!r}: expected a key like \"ctrl+n\""
                    )
        else:
            problems.append(
                f"{path}: unknown key {key!r}: expected one of "
                f"{', '.join([*_STRINGS, 'sidebar', 'keys'])}"
            )
    return settings, problems


def _to_toml(settings: Settings) -> dict[str, Any]:
    data: dict[str, Any] = {
        key: getattr(settings, key) for key in _STRINGS if getattr(settings, key)
    }
    data["sidebar"] = settings.sidebar
    if settings.keys:
        data["keys"] = dict(settings.keys)
    return data


def save_settings(settings: Settings, path: Path | None = None) -> None:
    """Write `config.toml` atomically (a crash never leaves half a file).

    Raises:
        OSError: the config dir is not writable.
    """
    import tomli_w

    path = path or config_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(tomli_w.dumps(_to_toml(settings)), encoding="utf-8")
    os.replace(tmp, path)
