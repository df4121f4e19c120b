"""Property tests: hostile presets, config files and colours give one line or a valid result,
never a traceback, and nothing already stored changes."""

from __future__ import annotations

import io
import json
import math
import re
import tomllib

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gptterm import cli_types, config, presets
from gptterm.presets import PresetError

SETTINGS = settings(max_examples=300, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture])

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(), st.integers(min_value=2**62, max_value=2**80),
    st.builds(pow, st.just(10), st.just(5000)), st.floats(), st.sampled_from([math.inf, -math.inf, math.nan, 1e309]),
    st.text(), st.text(alphabet=st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF)),
)
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=3)
                      | st.dictionaries(st.text(max_size=5), inner, max_size=3), max_leaves=6)
keys = st.one_of(st.sampled_from(sorted(presets.FIELD_NAMES)), st.text(max_size=12))


def one_line(message: str) -> bool:
    return bool(message) and "\n" not in message and "\r" not in message


def assert_valid_preset(p: presets.Preset) -> None:
    data = p.values()
    json.dumps(data, allow_nan=False)  # finite numbers only: a stored turn stays valid JSON
    assert p.seed is None or 0 <= p.seed < 2**63
    assert all(abs(v) <= 2**31 for v in data.values() if isinstance(v, int)
               and not isinstance(v, bool) and v is not p.seed)
    assert presets.from_mapping(data, where="again") == p  # what it stored loads back


@SETTINGS
@given(st.dictionaries(keys, values, max_size=6))
def test_preset_from_any_mapping_is_a_valid_preset_or_one_line(data):
    try:
        preset = presets.from_mapping(data, where="hostile.toml")
    except PresetError as exc:
        assert one_line(str(exc)) and str(exc).startswith("hostile.toml: "), str(exc)
    else:
        assert_valid_preset(preset)


@SETTINGS
@given(st.sampled_from(sorted(presets.FIELD_NAMES - {"name"})),
       st.one_of(st.text(max_size=30), st.from_regex(r"-?[0-9]{1,25}(\.[0-9]*)?(e[0-9]{1,4})?",
                                                      fullmatch=True),
                 st.sampled_from(["inf", "-inf", "nan", "1e309", "9" * 5000, "[1, 2]"])))
def test_set_assignment_from_any_text_is_a_valid_preset_or_one_line(key, raw):
    try:
        preset = presets.apply_assignments(presets.Preset(), [f"{key}={raw}"])
    except PresetError as exc:
        assert one_line(str(exc)) and str(exc).startswith("--set"), str(exc)
    else:
        assert_valid_preset(preset)


toml_values = st.one_of(
    st.sampled_from(['"x"', '""', "true", "3", "0", "257", "-1", "1.5", "inf", "nan", "[]",
                     '["ctrl+o", 1]', "{a = 1}", '"ctrl+o"', "9" * 5000, "1979-05-27",
                     '"\\u0000"', "'\\x1b[2J'"]),
    st.text(max_size=8))
config_keys = st.sampled_from(["model", "preset", "session", "theme", "sidebar", "threads",
                               "keys", "keys.help", "unknown", "keys.new_session"])
config_texts = st.one_of(
    st.lists(st.tuples(config_keys, toml_values), max_size=5).map(
        lambda kv: "# mine\n" + "".join(f"{k} = {v}\n" for k, v in kv)),
    st.text(max_size=60),
    st.binary(max_size=40).map(lambda b: b.decode("latin-1")),
)


@SETTINGS
@given(config_texts, st.sampled_from(["gpt2", "sea", None]), st.booleans(),
       st.one_of(st.none(), st.integers(min_value=1, max_value=256)))
def test_any_config_file_loads_politely_and_a_save_never_loses_it(tmp_path, text, model, sidebar,
                                                                  threads):
    path = tmp_path / "config.toml"
    path.write_bytes(text.encode("utf-8", "surrogatepass"))
    before = path.read_bytes()
    loaded, problems = config.load_settings(path)
    assert all(one_line(p) for p in problems)
    loaded.model, loaded.sidebar, loaded.threads = model, sidebar, threads
    try:
        config.save_settings(loaded, path)
    except config.SettingsNotSaved as exc:
        assert one_line(str(exc))
        assert path.read_bytes() == before  # a file with problems is never written
        return
    assert not loaded.load_problems
    again, _ = config.load_settings(path)
    assert (again.model, again.sidebar, again.threads) == (model, sidebar, threads)
    kept_before = {k: v for k, v in tomllib.loads(before.decode()).items()
                   if k not in ("model", "sidebar", "threads")}
    kept_after = {k: v for k, v in tomllib.loads(path.read_text()).items()
                  if k not in ("model", "sidebar", "threads")}
    # Everything else, unknown keys included, is as it was (compared as TOML text: a kept
    # `nan` is not equal to itself).
    assert repr(kept_after) == repr(kept_before)
    assert "# mine" in path.read_text() or "# mine" not in before.decode()


colour_text = st.one_of(
    st.text(max_size=20),
    st.from_regex(r"#[0-9a-fA-F]{0,9}", fullmatch=True),
    st.sampled_from(["red", "rgb(1,2,3)", "hsl(300,50%,50%)", "auto 87%", "$primary",
                     "red 50%", "initial", "bold", "red; } Screen { color: red", "#12345g"]),
)


@SETTINGS
@given(colour_text, colour_text, st.sampled_from(["footer-key-foreground", "text-muted",
                                                  "block-cursor-text-style", "nope"]))
def test_any_theme_colour_is_one_line_or_a_theme_textual_can_use(primary, variable, name):
    from textual.css.stylesheet import Stylesheet

    from gptterm.ui.themes import ThemeError, theme_from_mapping

    try:
        theme = theme_from_mapping({"primary": primary, "variables": {name: variable}},
                                   name="t", where="t.toml")
    except ThemeError as exc:
        assert one_line(str(exc)) and str(exc).startswith("t.toml: ")
        return
    variables = theme.to_color_system().generate()
    prop = "text-style" if name.endswith("text-style") else "color"
    sheet = Stylesheet(variables=variables)  # the way the app uses every variable
    sheet.add_source("Screen { background: $primary; color: $foreground; "
                     f"{prop}: ${name}; }}", read_from=("t", "t"))
    sheet.parse()


# --- cli_types ---------------------------------------------------------------------------


@SETTINGS
@given(st.one_of(st.text(max_size=30), st.integers().map(str),
                 st.sampled_from(["inf", "nan", "-0", "1e309", "0x10", "٣", " 7 "])))
def test_flag_types_give_a_value_in_range_or_one_line(text):
    import argparse

    for parse, ok in ((cli_types.seed_arg, lambda v: 0 <= v < 2**63),
                      (cli_types.positive_int, lambda v: 1 <= v <= 2**31 - 1),
                      (cli_types.finite_float(0, 1, hi_open=True), lambda v: 0 <= v < 1),
                      (cli_types.finite_float(0, 10, lo_open=True), lambda v: 0 < v <= 10)):
        try:
            value = parse(text)
        except argparse.ArgumentTypeError as exc:
            assert one_line(str(exc)) and "expected" in str(exc)
        else:
            assert ok(value) and math.isfinite(value)


@pytest.mark.parametrize("raw,expected", [
    ("caf\udce9", "byte 0xe9 at character 3"), ("\ud800x", "U+D800 at character 0")])
def test_text_arg_names_the_bad_byte(raw, expected):
    with pytest.raises(ValueError, match=re.escape(expected)):
        cli_types.check_text(raw, "prompt")
    assert cli_types.check_text("café ☕") == "café ☕"


def test_read_text_reads_stdin_and_rejects_invalid_utf8():
    assert cli_types.read_text("-", stdin=io.BytesIO("héllo\n".encode())) == "héllo\n"
    assert cli_types.read_text("plain") == "plain"
    with pytest.raises(ValueError, match=r"prompt from stdin is not valid UTF-8 \(byte 0xff "
                                         r"at offset 2\)"):
        cli_types.read_text("-", stdin=io.BytesIO(b"ab\xffcd"))


def test_check_helpers_name_value_and_range():
    with pytest.raises(ValueError, match=r"expected a finite number in \(0, 10\], got 'inf'"):
        cli_types.check_float("inf", 0, 10, lo_open=True)
    with pytest.raises(ValueError, match=r"expected an integer from 0 to 9223372036854775807"):
        cli_types.check_int(2**63, 0, 2**63 - 1)
    assert cli_types.check_int(" 12 ", 0, 20) == 12
