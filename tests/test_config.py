"""config.toml: Settings round-trip, and bad files give problem lines instead of crashing."""

from __future__ import annotations

from gptterm import config
from gptterm.config import Settings, load_settings, save_settings


def test_missing_file_gives_defaults_and_no_problems():
    settings, problems = load_settings()
    assert settings == Settings() and problems == []


def test_save_then_load_round_trips():
    s = Settings(model="gpt2", preset="creative", session="abc123", theme="midnight",
                 sidebar=False, keys={"new_session": "ctrl+o"})
    save_settings(s)
    assert config.config_path().is_file()
    assert load_settings() == (s, [])


def test_not_toml_is_one_problem_line():
    path = config.config_path()
    path.parent.mkdir(parents=True)
    path.write_text("model = \n")
    settings, problems = load_settings()
    assert settings == Settings()
    assert len(problems) == 1 and "not valid TOML" in problems[0] and str(path) in problems[0]


def test_bad_fields_are_reported_and_the_good_ones_kept():
    path = config.config_path()
    path.parent.mkdir(parents=True)
    path.write_text(
        'model = 3\npreset = "beta"\nsidebar = "yes"\ncolour = "red"\n'
        '[keys]\nnew_session = ["ctrl+o", "f12"]\nhelp = ""\n')
    settings, problems = load_settings()
    assert settings.preset == "beta" and settings.model is None and settings.sidebar is True
    assert settings.keys == {"new_session": "ctrl+o,f12"}
    assert len(problems) == 4
    joined = "\n".join(problems)
    for needle in ("model = 3", "sidebar = 'yes'", "unknown key 'colour'", "keys.help"):
        assert needle in joined
