"""Every key of the app in one table, and checking `[keys]` rebindings from config.toml.

`KEY_ACTIONS` is the one list of rebindable keys: the main screen's bindings, the
command palette's actions and the help screen are all made from it, so a key, its
config.toml name (`id`) and its label cannot drift apart.

`resolve_keymap` keeps a rebinding only when every key in it is a key Textual knows and
no other action ends up on the same key; each rejected rebinding is one problem line,
and that action keeps its default keys, so no action is left without a working key.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from textual.keys import REPLACED_KEYS, Keys, key_to_character

from gptterm.textsafe import inert


@dataclass(frozen=True)
class KeyAction:
    """A key binding that is also a palette command and a help-screen row."""

    id: str  # binding id: the name used in config.toml [keys]
    keys: str
    action: str  # an action of the main screen, or of the app when `app_wide`
    label: str
    help: str
    show: bool = True  # in the footer
    app_wide: bool = False
    short: str = ""  # the footer's label, when `label` is too long for it

    @property
    def footer(self) -> str:
        return self.short or self.label

    @property
    def target(self) -> str:
        """The action string a main-screen binding runs."""
        return f"app.{self.action}" if self.app_wide else self.action


# Default keys. Avoid ctrl+m, ctrl+i, ctrl+h (terminals send Enter, Tab, Backspace),
# ctrl+b (tmux) and the keys the prompt's TextArea uses (ctrl+a/c/d/e/k/u/v/w/x/y/z, f6/f7).
KEY_ACTIONS = (
    KeyAction("help", "f1", "help", "Help", "show every key", app_wide=True),
    KeyAction("new_session", "ctrl+n", "new_session", "New session", "start a new session",
              short="New"),
    KeyAction("previous_session", "alt+up,ctrl+pageup", "previous_session", "Previous session",
              "open the session above in the sidebar", show=False),
    KeyAction("next_session", "alt+down,ctrl+pagedown", "next_session", "Next session",
              "open the session below in the sidebar", show=False),
    KeyAction("cycle_preset", "f2", "cycle_preset", "Preset",
              "cycle to the next preset (the session keeps it from its next reply)"),
    KeyAction("pick_preset", "f3", "pick_preset", "Pick preset", "choose a preset from a list",
              show=False),
    KeyAction("cycle_model", "f4", "cycle_model", "Next model",
              "cycle to the next model on this machine", show=False),
    KeyAction("pick_model", "f5", "pick_model", "Pick model",
              "choose a model: catalog, trained, or a folder path",
              short="Model"),
    KeyAction("undo_model_switch", "alt+z", "undo_model_switch", "Undo switch",
              "go back to the model used before opening this session switched it", show=False),
    KeyAction("settings", "ctrl+o", "settings", "Settings",
              "this session's max tokens, temperature, top-k, top-p and seed"),
    KeyAction("cancel", "escape", "cancel", "Cancel", "stop the reply (kept, saved as cancelled)"),
    KeyAction("regenerate", "ctrl+r", "regenerate", "Regenerate",
              "write the last reply again (the old one stays as an alternative)", short="Redo"),
    KeyAction("continue", "ctrl+g", "continue_reply", "Continue", "continue the last reply"),
    KeyAction("previous_alternative", "alt+left", "previous_alternative", "Previous version",
              "show the last reply's previous version (the next turn continues from it)",
              show=False),
    KeyAction("next_alternative", "alt+right", "next_alternative", "Next version",
              "show the last reply's next version", show=False),
    KeyAction("edit_turn", "alt+r", "edit_turn", "Edit a turn",
              "rewrite any turn (the old text stays as an alternative)", show=False),
    KeyAction("branch", "alt+n", "branch", "Branch",
              "a new session holding the turns up to one you pick", show=False),
    KeyAction("memory", "alt+m", "memory", "Memory",
              "this session's pinned memory: always at the start of the context", show=False),
    KeyAction("undo", "alt+u", "undo", "Undo", "undo the last reply, edit or choice",
              show=False),
    KeyAction("copy_reply", "ctrl+t", "copy_reply", "Copy", "copy the last reply",
              show=False),
    KeyAction("copy_turn", "alt+c", "copy_turn", "Copy a turn", "pick any turn to copy",
              show=False),
    KeyAction("search", "alt+s", "search", "Search", "search every session's text",
              show=False),
    KeyAction("export", "alt+e", "export", "Export",
              "save the session as Markdown, JSON or plain text", show=False),
    KeyAction("toggle_inspector", "ctrl+l", "toggle_inspector", "Inspector",
              "show each new token's top candidates", show=False),
    KeyAction("toggle_beams", "alt+b", "toggle_beams", "Beams",
              "show or hide the live beams of beam search replies", show=False),
    KeyAction("stages", "alt+i", "stages", "Stages",
              "every sampling stage of each token of a reply, with a heat strip", show=False),
    KeyAction("toggle_steps", "alt+p", "toggle_steps", "Steps",
              "step mode: pick each token of the next replies by hand (1-9; Enter takes the "
              "sampler's)"),
    KeyAction("compare_presets", "ctrl+f", "compare_presets", "Compare",
              "try 2-3 presets side by side (not saved)", show=False),
    KeyAction("diff_models", "alt+d", "diff_models", "Checkpoint diff",
              "where model B gains and loses log-probability over model A on a text file",
              show=False, app_wide=True),
    KeyAction("replay", "f8", "replay", "Replay", "replay the session with its timing",
              show=False),
    KeyAction("toggle_sidebar", "ctrl+s", "toggle_sidebar", "Sidebar",
              "show or hide the sessions sidebar", show=False),
    KeyAction("rename_session", "f9", "rename_session", "Rename session",
              "rename the open session", show=False),
    KeyAction("delete_session", "f10", "delete_session", "Delete session",
              "delete the open session (asks first)", show=False),
    KeyAction("pick_theme", "f11", "pick_theme", "Pick theme", "choose a colour theme",
              show=False, app_wide=True),
)
BOUND_ELSEWHERE = (  # shown in help; not rebindable here
    ("enter", "send the prompt"),
    ("shift+enter, ctrl+j", "new line in the prompt"),
    ("up / down (empty prompt)", "earlier prompts: this session's, then every session's"),
    ("ctrl+p", "command palette: actions, presets, models, sessions, themes"),
    ("ctrl+q", "quit"),
    ("r / delete (sidebar)", "rename / delete the highlighted session"),
)


def default_keys() -> dict[str, str]:
    """config.toml [keys] name -> default keys."""
    return {a.id: a.keys for a in KEY_ACTIONS}


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
