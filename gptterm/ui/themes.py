"""Themes from TOML files: bundled `themes/*.toml` and the user's config dir.

A theme file holds the fields of `textual.theme.Theme` (its name is the file
stem unless it sets `name`) plus an optional `[variables]` table. A broken file
is reported as one line and skipped; the others still load.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from textual.color import Color, ColorParseError
from textual.css.stylesheet import Stylesheet
from textual.theme import Theme

from gptterm import paths
from gptterm.tomlfiles import load_dirs, read_toml, show_value

DEFAULT_THEME = "gptterm-dark"
_COLORS = (
    "primary", "secondary", "warning", "error", "success", "accent",
    "foreground", "background", "surface", "panel", "boost",
)
_NUMBERS = ("luminosity_spread", "text_alpha")


class ThemeError(ValueError):
    """A theme file is invalid; the message is one line for the user."""


def _check_color(where: str, key: str, value: Any) -> str:
    if not isinstance(value, str):
        raise ThemeError(f"{where}: {key} = {show_value(value)}: expected a colour string "
                         "like \"#1e90ff\"")
    try:
        Color.parse(value)
    except ColorParseError:
        raise ThemeError(
            f"{where}: {key} = {show_value(value)}: expected a colour like \"#1e90ff\" or "
            "\"red\"") from None
    return value


@functools.cache
def _variable_kinds() -> dict[str, str]:
    """Textual's design variables -> the CSS property a value for it must suit."""
    defaults = Theme(name="probe", primary="#808080").to_color_system().generate()
    kinds = {}
    for name, value in defaults.items():
        kind = next((k for k in _KINDS if _css_accepts(k, value)), None)
        if kind:
            kinds[name] = kind
    return kinds


_KINDS = {"color": "a colour like \"#1e90ff\"", "text-style": "a text style like \"bold\""}


def _css_accepts(prop: str, value: str) -> bool:
    """Whether Textual's own CSS parser takes `value` for `prop` (what the app will do)."""
    if any(c in value for c in ";{}\n\r$"):  # one value, not more CSS or a reference
        return False
    sheet = Stylesheet(variables={"probe": value})
    sheet.add_source(f"Screen {{ {prop}: $probe; }}", read_from=("theme", "probe"))
    try:
        sheet.parse()
    except Exception:  # noqa: BLE001 - any parse failure means Textual would reject it
        return False
    return True


def _check_variables(where: str, value: Any) -> dict[str, str]:
    """Validate a `[variables]` table: known names, values Textual's CSS accepts."""
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise ThemeError(f"{where}: variables: expected a table of name = \"value\"")
    kinds = _variable_kinds()
    for name, text in value.items():
        shown = show_value(name)[1:-1]
        if name not in kinds:
            raise ThemeError(f"{where}: variables.{shown}: unknown variable: expected a "
                             "Textual design variable like footer-key-foreground")
        if not _css_accepts(kinds[name], text):
            raise ThemeError(f"{where}: variables.{shown} = {show_value(text)}: expected "
                             f"{_KINDS[kinds[name]]}")
    return dict(value)


def theme_from_mapping(data: dict[str, Any], *, name: str, where: str) -> Theme:
    """Validate one theme's fields and build a Textual `Theme`.

    Raises:
        ThemeError: an unknown key, a missing primary colour or a bad value.
    """
    kwargs: dict[str, Any] = {"name": name}
    for key, value in data.items():
        if key == "name":
            if not isinstance(value, str) or not value.strip():
                raise ThemeError(f"{where}: name = {show_value(value)}: expected a non-empty string")
            kwargs["name"] = value.strip()
        elif key in _COLORS:
            kwargs[key] = _check_color(where, key, value)
        elif key == "dark":
            if not isinstance(value, bool):
                raise ThemeError(f"{where}: dark = {show_value(value)}: expected true or false")
            kwargs[key] = value
        elif key in _NUMBERS:
            if isinstance(value, bool) or not isinstance(value, (int, float)) or \
                    not 0 <= value <= 1:  # also rules out nan and inf
                raise ThemeError(f"{where}: {key} = {show_value(value)}: expected a number "
                                 "from 0 to 1")
            kwargs[key] = float(value)
        elif key == "variables":
            kwargs[key] = _check_variables(where, value)
        else:
            raise ThemeError(
                f"{where}: unknown key {show_value(key)}: expected one of "
                f"{', '.join(['name', 'dark', *_COLORS, *_NUMBERS, 'variables'])}"
            )
    if "primary" not in kwargs:
        raise ThemeError(f"{where}: primary is missing: expected a colour like \"#1e90ff\"")
    theme = Theme(**kwargs)
    try:  # derives every shade: catches colours Textual cannot combine
        theme.to_color_system().generate()
    except Exception as exc:  # noqa: BLE001 - any failure here is bad data
        raise ThemeError(f"{where}: cannot build the colour system: {exc}") from None
    return theme


def load_theme_file(path: Path) -> Theme:
    """Load one theme file.

    Raises:
        ThemeError: unreadable, not TOML, or invalid fields.
    """
    where = str(path)
    data = read_toml(path, ThemeError)
    return theme_from_mapping(data, name=path.stem, where=where)


def load_themes(dirs: Iterable[Path] | None = None) -> tuple[dict[str, Theme], list[str]]:
    """Load every `*.toml` theme; later dirs win by name.

    Returns:
        (themes by name, one error line per file that failed).
    """
    if dirs is None:
        dirs = [paths.bundled_themes_dir(), paths.user_themes_dir()]
    by_file, failed = load_dirs(dirs, load_theme_file, ThemeError)
    themes = {theme.name: theme for theme in by_file.values()}
    return themes, failed
