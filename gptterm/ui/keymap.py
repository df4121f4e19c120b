"""Checking `[keys]` rebindings from config.toml before the app applies them.

`resolve_keymap` keeps a rebinding only when every key in it is a key Textual knows and
no other action ends up on the same key; each rejected rebinding is one problem line,
and that action keeps its default keys, so no action is left without a working key.
"""

from __future__ import annotations

from collections.abc import Mapping

from textual.keys import REPLACED_KEYS, Keys, key_to_character

from gptterm.textsafe import inert

MODIFIERS = ("ctrl", "shift", "alt", "meta", "super", "hyper")
_NAMED = {k.value for k in Keys if "+" not in k.value and not k.value.startswith("<")}


def valid_key(key: str) -> bool:
    """Whether `key` ("ctrl+n", "f2", "question_mark", "a") is a key Textual can bind."""
    *mods, base = key.split("+")
    if len(set(mods)) != len(mods) or any(m not in MODIFIERS for m in mods):
        return False
    if not base or not base.isprintable() or any(c.isspace() for c in base):
        return False
    return base in _NAMED or len(base) == 1 or \
        key_to_character(REPLACED_KEYS.get(base, base)) is not None


def _split(keys: str) -> list[str]:
    return [k for k in keys.split(",") if k]


def resolve_keymap(wanted: Mapping[str, str], defaults: Mapping[str, str],
                   where: str = "config.toml [keys]") -> tuple[dict[str, str], list[str]]:
    """(the rebindings to apply, one problem line per rejected one).

    `defaults`: action id -> its default "key,key". A rebinding is rejected when its
    action is unknown, a key is not a key name, or it shares a key with another action
    (another rebinding listed earlier, or an action's default that stays).
    """
    problems: list[str] = []
    keymap: dict[str, str] = {}
    for action, keys in wanted.items():
        name = inert(action, single_line=True)
        if action not in defaults:
            problems.append(f"{where}: unknown action {name!r}: expected one of "
                            f"{', '.join(sorted(defaults))}")
        elif not _split(keys):
            problems.append(f"{where}: {name} = {inert(keys, single_line=True)!r}: expected a "
                            f"key like \"ctrl+n\"; keeping {defaults[action]}")
        elif bad := [k for k in _split(keys) if not valid_key(k)]:
            problems.append(f"{where}: {name} = {inert(keys, single_line=True)!r}: "
                            f"{inert(bad[0], single_line=True)!r} is not a key name (expected "
                            f"e.g. ctrl+n, f2, alt+up); keeping {defaults[action]}")
        else:
            keymap[action] = keys
    while clash := _first_clash(keymap, defaults):  # each pass drops one rebinding
        action, key, other = clash
        problems.append(f"{where}: {action} = {keymap[action]!r}: {key} is already {other}'s "
                        f"key; keeping {defaults[action]}")
        del keymap[action]
    return keymap, problems


def _first_clash(keymap: Mapping[str, str],
                 defaults: Mapping[str, str]) -> tuple[str, str, str] | None:
    """(rebound action, key, the action that holds the key) for the first shared key."""
    holder: dict[str, str] = {}
    for action in defaults:  # defaults of actions not rebound hold their keys first
        if action not in keymap:
            for key in _split(defaults[action]):
                holder.setdefault(key, action)
    for action, keys in keymap.items():
        for key in _split(keys):
            if key in holder and holder[key] != action:
                return action, key, holder[key]
            holder[key] = action
    return None
