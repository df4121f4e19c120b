"""User settings: the `Settings` dataclass and `config.toml` load/save.

`config.toml` lives in `paths.config_dir()` and remembers the last model,
preset, session and theme, plus key rebindings:

    model = "shakespeare-mini"
    preset = "creative"
    session = "9f0c..."
    theme = "gptterm-dark"
    sidebar = true
    threads = 4
    precision = "auto"              # auto | fp32 | bf16 | fp16 | int8 (engine/precision.py)

    [keys]
    new_session = "ctrl+n"
    cycle_preset = "f2,ctrl+right"

    [backends.gpu-box]              # a model server: --model remote:gpu-box
    url = "http://127.0.0.1:8080"
    flavor = "auto"                 # auto | llama.cpp | vllm | sglang | tgi | ollama | openai
    model = "gpt2-xl"               # the server's model id (optional)
    api_key_env = "GPU_BOX_KEY"     # an environment variable holding a bearer token (optional)
    lenient = false                 # drop preset fields the server cannot honour (optional)

Loading never raises: a broken file or field gives one problem line each (the UI
shows them in a notification) and the defaults for what could not be read.

Saving edits the file as written (tomlkit): only the settings that changed since
it was loaded are touched, so comments, ordering and keys gptterm does not know stay
byte for byte. A file that had problems (unreadable, not TOML, a value that could
not be read) is never written: `save_settings` raises `SettingsNotSaved` instead, so
a typo is never "repaired" into the defaults. Stdlib + tomlkit only (no textual, no torch).
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gptterm import paths
from gptterm.safefile import replace_file
from gptterm.tomlfiles import one_line, show_value

CONFIG_NAME = "config.toml"
_STRINGS = ("model", "preset", "session", "theme")
_KNOWN_KEYS = (*_STRINGS, "sidebar", "threads", "precision", "keys", "backends")
THREADS_MAX = 256
PRECISION_CHOICES = ("auto", "fp32", "bf16", "fp16", "int8")
BACKEND_FLAVORS = ("auto", "llama.cpp", "vllm", "sglang", "tgi", "ollama", "openai")
_BACKEND_KEYS = ("url", "flavor", "model", "api_key_env", "lenient")


class SettingsNotSaved(Exception):
    """config.toml was not written; the message is one line for the user."""


@dataclass(frozen=True)
class BackendConfig:
    """One `[backends.NAME]` table: a model server (see gptterm.remote)."""

    name: str
    url: str
    flavor: str = "auto"
    model: str | None = None
    api_key_env: str | None = None
    lenient: bool = False


@dataclass
class Settings:
    """What gptterm remembers between runs; None means "use the default"."""

    model: str | None = None
    preset: str | None = None
    session: str | None = None
    theme: str | None = None
    sidebar: bool = True
    threads: int | None = None  # CPU threads for the engine; None: the library default
    precision: str | None = None  # one of PRECISION_CHOICES; None: the device's default
    keys: dict[str, str] = field(default_factory=dict)  # action id -> "key,key"
    backends: dict[str, BackendConfig] = field(default_factory=dict)  # never written back
    # Where these values came from, not settings: the values as read (what a save diffs
    # against; None when not read from a file) and the blocking problems of that read.
    loaded: dict[str, Any] | None = field(default=None, compare=False, repr=False)
    load_problems: tuple[str, ...] = field(default=(), compare=False, repr=False)


def config_path() -> Path:
    return paths.config_dir() / CONFIG_NAME


def _flat(settings: Settings) -> dict[str, Any]:
    """Every setting as `key` or `keys.action` -> value (None: absent from the file)."""
    flat: dict[str, Any] = {key: getattr(settings, key) for key in _STRINGS}
    flat["sidebar"] = settings.sidebar
    flat["threads"] = settings.threads
    flat["precision"] = settings.precision
    for action, keys in settings.keys.items():
        flat[f"keys.{action}"] = keys
    return flat


def _read(data: dict[str, Any], where: Path) -> tuple[Settings, list[str], list[str]]:
    """Settings from parsed TOML: (settings, blocking problems, unknown-key notes).

    Unknown keys are only notes: a save keeps them as written, so nothing is lost.
    """
    settings = Settings()
    bad: list[str] = []
    notes: list[str] = []
    for key, value in data.items():
        if key in _STRINGS:
            if isinstance(value, str) and value:
                setattr(settings, key, value)
            else:
                bad.append(f"{where}: {key} = {show_value(value)}: expected a non-empty string")
        elif key == "sidebar":
            if isinstance(value, bool):
                settings.sidebar = value
            else:
                bad.append(f"{where}: sidebar = {show_value(value)}: expected true or false")
        elif key == "threads":
            if check_threads(value):
                settings.threads = value
            else:
                bad.append(f"{where}: threads = {show_value(value)}: expected an integer from 1 "
                           f"to {THREADS_MAX}")
        elif key == "precision":
            if value in PRECISION_CHOICES:
                settings.precision = value
            else:
                bad.append(f"{where}: precision = {show_value(value)}: expected one of "
                           f"{', '.join(PRECISION_CHOICES)}")
        elif key == "keys":
            _read_keys(value, settings, bad, where)
        elif key == "backends":
            _read_backends(value, settings, bad, where)
        else:
            notes.append(f"{where}: unknown key {show_value(key)}: expected one of "
                         f"{', '.join(_KNOWN_KEYS)}")
    return settings, bad, notes


def check_threads(value: Any) -> bool:
    """Whether `value` is a valid `threads` setting (an int in 1..THREADS_MAX)."""
    return isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= THREADS_MAX


def _read_keys(value: Any, settings: Settings, bad: list[str], where: Path) -> None:
    if not isinstance(value, dict):
        bad.append(f"{where}: keys: expected a table of action = \"key\"")
        return
    for action, keys in value.items():
        if isinstance(keys, list) and all(isinstance(k, str) for k in keys):
            keys = ",".join(keys)
        if isinstance(keys, str) and keys.strip():
            settings.keys[action] = keys.replace(" ", "")
        else:
            bad.append(f"{where}: keys.{show_value(action)[1:-1]} = {show_value(keys)}: expected a key like "
                       "\"ctrl+n\"")


def _read_backends(value: Any, settings: Settings, bad: list[str], where: Path) -> None:
    """`[backends.NAME]` tables; each bad one is a problem line and is left out."""
    if not isinstance(value, dict):
        bad.append(f"{where}: backends: expected tables like [backends.NAME] with a url")
        return
    for name, table in value.items():
        at = f"{where}: backends.{show_value(name)[1:-1]}"
        if not isinstance(table, dict):
            bad.append(f"{at}: expected a table with url = \"http://...\"")
            continue
        problem = _backend_problem(table)
        if problem:
            bad.append(f"{at}: {problem}")
            continue
        settings.backends[name] = BackendConfig(
            name, table["url"], table.get("flavor", "auto"), table.get("model"),
            table.get("api_key_env"), table.get("lenient", False))


def _backend_problem(table: dict[str, Any]) -> str | None:
    """What is wrong with one backend table (None: nothing)."""
    for key in table:
        if key not in _BACKEND_KEYS:
            return f"unknown key {show_value(key)}: expected one of {', '.join(_BACKEND_KEYS)}"
    url = table.get("url")
    if not isinstance(url, str) or not url.startswith(("http://", "https://")) \
            or len(url) <= len("https://"):
        return f"url = {show_value(url)}: expected an http:// or https:// URL"
    flavor = table.get("flavor", "auto")
    if flavor not in BACKEND_FLAVORS:
        return f"flavor = {show_value(flavor)}: expected one of {' | '.join(BACKEND_FLAVORS)}"
    for key in ("model", "api_key_env"):
        if key in table and (not isinstance(table[key], str) or not table[key]):
            return f"{key} = {show_value(table[key])}: expected a non-empty string"
    if not isinstance(table.get("lenient", False), bool):
        return f"lenient = {show_value(table['lenient'])}: expected true or false"
    return None


def _parse(path: Path) -> tuple[str | None, dict[str, Any], list[str]]:
    """(text or None when missing, parsed data, blocking problems) of the file at `path`."""
    try:  # bytes as they are: no newline translation, so a stray CR is a TOML error
        text = path.read_bytes().decode("utf-8")
    except FileNotFoundError:
        return None, {}, []
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        return None, {}, [f"{path}: cannot read: {one_line(exc)}"]
    try:
        return text, tomllib.loads(text), []
    except ValueError as exc:  # TOMLDecodeError, or an integer too long to convert
        return text, {}, [f"{path}: not valid TOML: {one_line(exc)}"]


def load_settings(path: Path | None = None) -> tuple[Settings, list[str]]:
    """Read `config.toml`.

    Returns:
        (settings, one line per problem). A missing file is not a problem.
    """
    path = path or config_path()
    _, data, problems = _parse(path)
    if problems:
        return Settings(loaded={}, load_problems=tuple(problems)), problems
    settings, bad, notes = _read(data, path)
    settings.loaded = _flat(settings)
    settings.load_problems = tuple(bad)
    return settings, bad + notes


def save_settings(settings: Settings, path: Path | None = None) -> None:
    """Write the settings that changed since load into `config.toml`, keeping the rest.

    Raises:
        SettingsNotSaved: the file had problems when it was loaded, has them now, or the
            edit would not read back as `settings`; the file is left as it is.
        OSError: the config dir is not writable.
    """
    path = path or config_path()
    if settings.load_problems:
        raise SettingsNotSaved(f"{path} has problems, so settings are not saved until it "
                               f"is fixed (first: {settings.load_problems[0]})")
    text, data, problems = _parse(path)
    if not problems:
        problems = _read(data, path)[1]
    if problems:
        raise SettingsNotSaved(f"settings not saved: {problems[0]}")
    new_text = _edited(text or "", settings, path)
    if new_text == (text or "") and text is not None:
        settings.loaded = _flat(settings)
        return
    _write_atomically(path, new_text)
    settings.loaded = _flat(settings)


def _edited(text: str, settings: Settings, path: Path) -> str:
    """`text` with the changed settings applied (a document edit, not a rewrite)."""
    import tomlkit

    try:
        doc = tomlkit.parse(text)
    except Exception as exc:  # noqa: BLE001 - tomlkit's errors have no common base
        raise SettingsNotSaved(f"settings not saved: {path}: cannot edit: {one_line(exc)}") \
            from None
    now, before = _flat(settings), settings.loaded
    for key in sorted(set(now) | set(before or {})):
        value = now.get(key)
        if before is not None and before.get(key) == value:
            continue
        table, name = doc, key
        if key.startswith("keys."):
            name = key[len("keys."):]
            if value is not None and "keys" not in doc:
                doc["keys"] = tomlkit.table()
            table = doc.get("keys", {})
        if value is None:
            if name in table:
                del table[name]
        else:
            table[name] = value
    new_text = tomlkit.dumps(doc)
    check, bad, _ = _read(tomllib.loads(new_text), path)
    if bad or _flat(check) != now:  # never replace a file with one that reads differently
        raise SettingsNotSaved(f"settings not saved: {path}: the edited file would not read "
                               "back as the settings")
    return new_text


def _write_atomically(path: Path, text: str) -> None:
    """Replace `config.toml` (through a symlink) so a crash never leaves half a file."""
    target = path.resolve() if path.is_symlink() else path
    target.parent.mkdir(parents=True, exist_ok=True)
    replace_file(target, text)
