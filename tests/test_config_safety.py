"""The TUI never loses a user's config.toml, and bad key bindings or themes never stop it."""

from __future__ import annotations

from ui_fakes import Engines, notifications, ready, until

from gptterm import config
from gptterm.ui.app import make_app
from gptterm.ui.keymap import resolve_keymap, valid_key

TYPO = ('# keep me\ntheme = "midnight"\npreset = "beta"\nsidebar = yes\n'
        '[keys]\nnew_session = "ctrl+o"\n')


async def test_a_config_with_a_typo_survives_a_model_load_byte_for_byte(ui_env):
    path = config.config_path()
    path.write_text(TYPO)
    app = make_app(engine_factory=Engines().factory())
    async with app.run_test() as pilot:
        await ready(pilot)
        app.main.action_toggle_sidebar()
        await until(pilot, lambda: any("not saved" in n for n in notifications(app)))
        said = [n for n in notifications(app) if "not saved" in n]
        assert len(said) == 1 and "\n" not in said[0]
    assert path.read_text() == TYPO


DEFAULTS = {"help": "f1", "new_session": "ctrl+n", "cycle_preset": "f2",
            "next_session": "alt+down,ctrl+pagedown"}


def test_key_names_textual_can_bind():
    for good in ("ctrl+n", "f2", "alt+up", "ctrl+shift+right", "question_mark", "a", "comma",
                 "escape", "ctrl+pagedown", "plus"):
        assert valid_key(good), good
    for bad in ("ctlr+n", "ctrl+nn", "f99", "ctrl+", "", "ctrl+ctrl+n", "hyper+bogus", " "):
        assert not valid_key(bad), bad


def test_a_key_bound_twice_or_misspelt_keeps_the_default_with_one_line_each():
    wanted = {"help": "f2", "new_session": "ctlr+o", "next_session": "f12",
              "cycle_preset": "f12", "nope": "f3"}
    keymap, problems = resolve_keymap(wanted, DEFAULTS)
    assert keymap == {"next_session": "f12"}
    assert len(problems) == 4 and all("\n" not in p for p in problems)
    joined = "\n".join(problems)
    assert "help = 'f2': f2 is already cycle_preset's key; keeping f1" in joined
    assert "'ctlr+o' is not a key name" in joined and "keeping ctrl+n" in joined
    assert "cycle_preset = 'f12': f12 is already next_session's key; keeping f2" in joined
    assert "unknown action 'nope'" in joined


def test_a_swap_of_two_keys_is_fine_and_a_chain_of_clashes_settles():
    assert resolve_keymap({"help": "f2", "cycle_preset": "f1"}, DEFAULTS) == (
        {"help": "f2", "cycle_preset": "f1"}, [])
    # new_session takes f2 (clash: dropped), which frees nothing; help took ctrl+n, which
    # new_session's restored default holds: dropped too. Every action keeps a key.
    keymap, problems = resolve_keymap({"help": "ctrl+n", "new_session": "f2"}, DEFAULTS)
    assert keymap == {} and len(problems) == 2


async def test_bad_key_bindings_do_not_leave_an_action_without_a_key(ui_env):
    config.config_path().write_text(
        '[keys]\nnew_session = "f2"\nhelp = "ctrl+nope"\ntoggle_sidebar = "f12"\n')
    app = make_app(engine_factory=Engines().factory())
    async with app.run_test() as pilot:
        await ready(pilot)
        said = [n for n in notifications(app) if "[keys]" in n]
        assert len(said) == 1  # all problems arrive in one notification
        assert "new_session = 'f2'" in said[0] and "'ctrl+nope' is not a key name" in said[0]
        sidebar = app.main.query_one("#sessions").parent
        shown = sidebar.display
        await pilot.press("f12")
        await until(pilot, lambda: sidebar.display != shown)
        n_sessions = len(app.sessions())
        await pilot.press("f1")  # help kept its default key
        await until(pilot, lambda: type(app.screen).__name__ == "HelpScreen")
        assert n_sessions == len(app.sessions())
