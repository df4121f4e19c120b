"""config.toml: Settings round-trip, and bad files give problem lines instead of crashing."""

from __future__ import annotations

import pytest

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


COMMENTED = (
    "# my gptterm settings\n"
    "theme = \"midnight\"   # dark at night\n"
    "preset = \"creative\"\n"
    "\n"
    "[keys]\n"
    "# I like ctrl+o\n"
    "new_session = [\"ctrl+o\", \"f12\"]\n"
    "\n"
    "[plugins.future]   # a table this version does not know\n"
    "answer = 42\n"
)


def write_config(text: str):
    path = config.config_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text.encode())
    return path


def test_save_changes_only_the_changed_key_and_keeps_comments_and_unknown_tables():
    path = write_config(COMMENTED)
    settings, problems = load_settings()
    assert problems == [(f"{path}: unknown key 'plugins': expected one of model, preset, "
                         "session, theme, sidebar, threads, precision, keys, backends")]
    settings.model = "gpt2"
    settings.theme = "sea"
    save_settings(settings)
    assert path.read_text() == COMMENTED.replace('"midnight"', '"sea"').replace(
        'preset = "creative"\n', 'preset = "creative"\nmodel = "gpt2"\n')
    assert load_settings()[0] == Settings(model="gpt2", preset="creative", theme="sea",
                                          keys={"new_session": "ctrl+o,f12"})


def test_a_typo_in_one_value_means_the_file_is_never_written():
    text = COMMENTED.replace('preset = "creative"', 'preset = creative')  # not TOML
    for broken in (text, "sidebar = \"yes\"\n" + COMMENTED, "threads = 0\n" + COMMENTED):
        path = write_config(broken)
        settings, problems = load_settings()
        assert problems and all("\n" not in p for p in problems)
        settings.model = "gpt2"
        settings.session = "abc"
        with pytest.raises(config.SettingsNotSaved, match="not saved") as caught:
            save_settings(settings)
        assert "\n" not in str(caught.value) and str(path) in str(caught.value)
        assert path.read_bytes() == broken.encode()
        assert not path.with_name("config.toml.tmp").exists()


def test_a_file_broken_after_load_is_not_overwritten():
    path = write_config(COMMENTED)
    settings, _ = load_settings()
    broken = COMMENTED + "theme = [\n"
    path.write_text(broken)
    settings.model = "gpt2"
    with pytest.raises(config.SettingsNotSaved):
        save_settings(settings)
    assert path.read_text() == broken


def test_keys_edited_one_action_at_a_time():
    path = write_config(COMMENTED)
    settings, _ = load_settings()
    settings.keys["help"] = "f12"
    del settings.keys["new_session"]
    settings.theme = None
    save_settings(settings)
    text = path.read_text()
    assert "theme" not in text and "new_session" not in text
    assert "# I like ctrl+o\n" in text and 'help = "f12"' in text and "answer = 42" in text
    assert load_settings()[0].keys == {"help": "f12"}


def test_threads_is_validated_loaded_and_saved():
    path = write_config("threads = 8\n")
    settings, problems = load_settings()
    assert settings.threads == 8 and problems == []
    settings.threads = 2
    save_settings(settings)
    assert path.read_text() == "threads = 2\n"
    for bad in ("0", "257", "true", "2.5", '"4"', str(10**40)):
        write_config(f"threads = {bad}\n")
        settings, problems = load_settings()
        assert settings.threads is None
        assert len(problems) == 1 and "threads" in problems[0] and "1 to 256" in problems[0]


def test_config_through_a_symlink_stays_a_symlink(tmp_path):
    real = tmp_path / "dotfiles" / "gptterm.toml"
    real.parent.mkdir()
    real.write_text("# mine\nsidebar = true\n")
    link = config.config_path()
    link.parent.mkdir(parents=True)
    link.symlink_to(real)
    settings, _ = load_settings()
    settings.sidebar = False
    save_settings(settings)
    assert link.is_symlink() and real.read_text() == "# mine\nsidebar = false\n"


def test_config_is_read_as_its_bytes(tmp_path):
    """A lone CR is not TOML (the file is not rewritten); CRLF line ends stay as they are."""
    path = tmp_path / "config.toml"
    path.write_bytes(b"\r")
    settings, problems = config.load_settings(path)
    assert len(problems) == 1 and "not valid TOML" in problems[0]
    settings.model = "gpt2"
    with pytest.raises(config.SettingsNotSaved):
        config.save_settings(settings, path)
    assert path.read_bytes() == b"\r"
    path.write_bytes(b'model = "x"\r\n# mine\r\n')
    settings, problems = config.load_settings(path)
    settings.model = "gpt2"
    config.save_settings(settings, path)
    assert problems == [] and path.read_bytes() == b'model = "gpt2"\r\n# mine\r\n'
