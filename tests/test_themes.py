"""Themes from TOML: the bundled ones build, a broken file is one line, the choice persists."""

from __future__ import annotations

import pytest
from ui_fakes import Engines, notifications, until

from gptterm import config, paths
from gptterm.ui.app import make_app
from gptterm.ui.themes import DEFAULT_THEME, load_theme_file, load_themes, theme_from_mapping


def test_bundled_themes_load():
    themes, failed = load_themes([paths.bundled_themes_dir()])
    assert failed == []
    assert DEFAULT_THEME in themes and len(themes) >= 3
    assert {t.dark for t in themes.values()} == {True, False}


def test_a_broken_theme_is_one_line_and_the_others_load(tmp_path):
    (tmp_path / "good.toml").write_text('primary = "#112233"\ndark = false\n')
    (tmp_path / "badcolour.toml").write_text('primary = "not-a-colour"\n')
    (tmp_path / "notoml.toml").write_text('primary = \n')
    (tmp_path / "unknown.toml").write_text('primary = "#000000"\nshiny = true\n')
    (tmp_path / "noprimary.toml").write_text('dark = true\n')
    themes, failed = load_themes([tmp_path])
    assert list(themes) == ["good"] and themes["good"].dark is False
    assert len(failed) == 4
    assert all("\n" not in line for line in failed)
    assert any("badcolour.toml: primary = 'not-a-colour'" in line for line in failed)
    assert any("unknown key 'shiny'" in line for line in failed)


def test_user_theme_overrides_and_name_key(tmp_path):
    (tmp_path / "mine.toml").write_text('name = "My Theme"\nprimary = "red"\n')
    theme = load_theme_file(tmp_path / "mine.toml")
    assert theme.name == "My Theme" and theme.primary == "red"


async def test_theme_choice_persists_and_broken_user_theme_notifies(ui_env):
    themes_dir = paths.user_themes_dir()
    themes_dir.mkdir(parents=True)
    (themes_dir / "broken.toml").write_text("primary = 12\n")
    (themes_dir / "sea.toml").write_text('primary = "#1e90ff"\nbackground = "#001020"\n')
    app = make_app(engine_factory=Engines().factory())
    async with app.run_test() as pilot:
        await until(pilot, lambda: app.engine is not None)
        assert app.theme == DEFAULT_THEME
        assert "sea" in app.available_themes and "midnight" in app.available_themes
        assert any("broken.toml: primary = 12" in n for n in notifications(app))
        app.theme = "sea"
        await pilot.pause()
    assert config.load_settings()[0].theme == "sea"
    app2 = make_app(engine_factory=Engines().factory())
    async with app2.run_test() as pilot:
        assert app2.theme == "sea"


@pytest.mark.parametrize("text,needle", [
    ('[variables]\n"footer-key-foreground" = "not-a-colour"\n',
     "variables.footer-key-foreground = 'not-a-colour': expected a colour"),
    ('[variables]\n"footer-key-foreground" = "$primary"\n', "variables.footer-key-foreground"),
    ('[variables]\n"footer-key-foreground" = "red; } Screen { color: red"\n',
     "variables.footer-key-foreground"),
    ('[variables]\n"block-cursor-text-style" = "sparkly"\n', "expected a text style"),
    ('[variables]\n"no-such-variable" = "red"\n', "variables.no-such-variable: unknown variable"),
    ("text_alpha = nan\n", "text_alpha = nan: expected a number from 0 to 1"),
    ("luminosity_spread = 1e309\n", "luminosity_spread = inf"),
    ("primary = 12345678901234567890123456789\n", "primary = 1234"),
])
def test_bad_variables_and_numbers_are_one_line_naming_file_and_key(tmp_path, text, needle):
    body = text if text.startswith("primary") else 'primary = "#112233"\n' + text
    (tmp_path / "bad.toml").write_text(body)
    themes, failed = load_themes([tmp_path])
    assert themes == {} and len(failed) == 1
    assert "\n" not in failed[0] and "bad.toml" in failed[0] and needle in failed[0], failed


def test_good_variables_load():
    theme = theme_from_mapping(
        {"primary": "#112233", "variables": {"footer-key-foreground": "#F2B84B",
                                             "block-cursor-text-style": "bold italic",
                                             "text-muted": "auto 60%"}},
        name="ok", where="ok.toml")
    assert theme.variables["block-cursor-text-style"] == "bold italic"


async def test_a_chosen_theme_with_a_bad_variable_falls_back_and_the_app_starts(ui_env):
    themes_dir = paths.user_themes_dir()
    themes_dir.mkdir(parents=True)
    (themes_dir / "neon.toml").write_text(
        'primary = "#ff00ff"\n[variables]\n"footer-key-foreground" = "glow"\n')
    config.config_path().write_text('theme = "neon"\n')
    app = make_app(engine_factory=Engines().factory())
    async with app.run_test() as pilot:
        await until(pilot, lambda: app.engine is not None)
        assert app.theme == DEFAULT_THEME
        said = [n for n in notifications(app) if "neon.toml" in n]
        assert len(said) == 1 and "variables.footer-key-foreground = 'glow'" in said[0]
    assert config.config_path().read_text().startswith('theme = "neon"\n')  # kept for later
