"""Where gptterm keeps things: data, config and cache dirs, and the bundled files.

`GPTTERM_DATA_DIR` and `GPTTERM_CONFIG_DIR` override the platformdirs locations
(tests point them at temporary folders).
"""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs

APP = "gptterm"
_PACKAGE = Path(__file__).resolve().parent


def data_dir() -> Path:
    """The user data dir (sessions database); created on first use."""
    path = Path(os.environ.get("GPTTERM_DATA_DIR") or platformdirs.user_data_dir(APP))
    path.mkdir(mode=0o700, parents=True, exist_ok=True)  # private: sessions live here
    return path


def config_dir() -> Path:
    """The user config dir (config.toml, presets/, themes/)."""
    return Path(os.environ.get("GPTTERM_CONFIG_DIR") or platformdirs.user_config_dir(APP))


def _bundled(name: str) -> Path:
    # A wheel carries them inside the package; an editable install reads the repo's.
    inside = _PACKAGE / "_bundled" / name
    return inside if inside.is_dir() else _PACKAGE.parent / name


def bundled_presets_dir() -> Path:
    return _bundled("presets")


def bundled_themes_dir() -> Path:
    return _bundled("themes")


def user_presets_dir() -> Path:
    return config_dir() / "presets"


def user_themes_dir() -> Path:
    return config_dir() / "themes"


def shipped_models_dir() -> Path:
    """Models trained by this project and shipped inside the package."""
    return _PACKAGE / "models"
