"""The TUI never loses a user's config.toml, and bad key bindings or themes never stop it."""

from __future__ import annotations

from ui_fakes import Engines, notifications, ready, until

from gptterm import config, paths
from gptterm.ui.app import make_app

TYPO = ('# keep me\ntheme = "midnight"\npreset = "beta"\nsidebar = yes\n'
        '[keys]\nnew_session = "ctrl+o"\n')


async def test_a_config_with_a_typo_survives_a_model_load_byte_for_byte(ui_env):
    path = config.config_path()
    path.write_text(TYPO)
    app = make_app(engine_factory=Engines().factory())
    async with app.run_test() as pilot:
        await ready(pilot)
        app.action_toggle_sidebar()
        await until(pilot, lambda: any("not saved" in n for n in notifications(app)))
        said = [n for n in notifications(app) if "not saved" in n]
        assert len(said) == 1 and "\n" not in said[0]
    assert path.read_text() == TYPO
