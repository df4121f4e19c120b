"""`gptterm sessions ...`: list, show, search, export, import, rename, delete."""

from __future__ import annotations

import json

import pytest

from gptterm import paths
from gptterm.cli import main
from gptterm.store import Store


@pytest.fixture
def two_sessions():
    store = Store()
    a = store.create_session(name="sea")
    store.add_turn(a.id, "user", "The lighthouse keeper")
    w = store.begin_turn(a.id, model="tiny", preset={"name": "warm", "method": "sample"}, seed=5)
    w.append(" polished the lens", [1, 2, 3], at=0.2)
    w.finish("complete", {"n_tokens": 3, "seconds": 0.3, "ttft": 0.05})
    b = store.create_session()
    store.add_turn(b.id, "user", "A haiku about frost")
    store.close()
    return a.id, b.id


def _out(capsys) -> str:
    return capsys.readouterr().out


def test_list_shows_sessions_newest_first(two_sessions, capsys):
    a, b = two_sessions
    assert main(["sessions", "list"]) == 0
    lines = _out(capsys).splitlines()
    assert lines[0].split() == ["ID", "NAME", "TURNS", "UPDATED", "TITLE"]
    assert lines[1].startswith(b) and lines[1].endswith("A haiku about frost")
    assert lines[2].startswith(a) and " sea " in lines[2] and lines[2].endswith("keeper")
    assert main(["sessions", "list", "--json"]) == 0
    rows = [json.loads(line) for line in _out(capsys).splitlines()]
    assert [(r["id"], r["name"], r["turns"]) for r in rows] == [(b, None, 1), (a, "sea", 2)]


def test_list_when_empty(capsys):
    assert main(["sessions", "list"]) == 0
    assert "no sessions yet" in _out(capsys)


def test_show_by_id_name_or_title(two_sessions, capsys):
    a, _ = two_sessions
    for ref in (a, "sea", "The lighthouse keeper"):
        assert main(["sessions", "show", ref]) == 0
        out = _out(capsys)
        assert out.startswith(f"The lighthouse keeper  (id {a}, name sea, 2 turns")
        assert "--- 1: tiny · warm · seed 5 (3 tokens" in out
        assert " polished the lens" in out


def test_search_finds_prompt_and_reply_words(two_sessions, capsys):
    a, b = two_sessions
    assert main(["sessions", "search", "lens"]) == 0
    out = _out(capsys)
    assert out.startswith(a) and "turn 1 (model)" in out and "[lens]" in out
    assert main(["sessions", "search", "haiku", "frost", "--json"]) == 0
    hit = json.loads(_out(capsys))
    assert (hit["session"], hit["turn"], hit["role"]) == (b, 0, "user")
    assert main(["sessions", "search", "nothing-here"]) == 1


def test_export_json_import_round_trip(two_sessions, tmp_path, capsys, monkeypatch):
    a, _ = two_sessions
    out = tmp_path / "sea.json"
    assert main(["sessions", "export", "sea", "--format", "json", "-o", str(out)]) == 0
    exported = json.loads(out.read_text())
    assert exported["session"]["id"] == a and len(exported["turns"]) == 2
    # Into another data dir: the same session comes back.
    monkeypatch.setenv("GPTTERM_DATA_DIR", str(tmp_path / "elsewhere"))
    assert main(["sessions", "import", str(out)]) == 0
    assert _out(capsys).startswith(f"imported {a}: The lighthouse keeper")
    again = tmp_path / "again.json"
    assert main(["sessions", "export", a, "--format", "json", "-o", str(again)]) == 0
    assert json.loads(again.read_text()) == exported
    # A second import of the same file makes a copy.
    assert main(["sessions", "import", str(out)]) == 0
    assert "imported with a new id" in _out(capsys)
    store = Store()
    assert len(store.list_sessions()) == 2
    store.close()


def test_export_markdown_to_stdout(two_sessions, capsys):
    assert main(["sessions", "export", "sea"]) == 0
    md = _out(capsys)
    assert md.startswith("# The lighthouse keeper\n") and "## You" in md
    assert "## tiny · warm · seed 5" in md and " polished the lens" in md


def test_rename_and_delete(two_sessions, capsys):
    a, b = two_sessions
    assert main(["sessions", "rename", "sea", "Lighthouse"]) == 0
    assert main(["sessions", "show", "Lighthouse"]) == 0
    assert _out(capsys).splitlines()[1].startswith("Lighthouse  (id")
    assert main(["sessions", "delete", a]) == 0
    assert _out(capsys) == f"deleted {a}: Lighthouse\n"
    assert main(["sessions", "list", "--json"]) == 0
    assert [json.loads(line)["id"] for line in _out(capsys).splitlines()] == [b]


@pytest.mark.parametrize("argv, needle", [
    (["sessions", "show", "missing"], "no session has the id, name or title 'missing'"),
    (["sessions", "delete", "missing"], "missing"),
    (["sessions", "rename", "sea", "  "], "TITLE"),
    (["sessions", "import", "/nonexistent/file.json"], "/nonexistent/file.json: cannot read"),
])
def test_bad_input_is_one_line_exit_2(two_sessions, capsys, argv, needle):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("gptterm: ") and err.count("\n") == 1 and needle in err


def test_import_of_a_bad_file_names_the_field(tmp_path, capsys):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    assert main(["sessions", "import", str(bad)]) == 2
    assert f"{bad}: not valid JSON" in capsys.readouterr().err
    bad.write_text(json.dumps({"format": "gptterm-session", "version": 1,
                               "session": {"id": "abc"}, "turns": [{"role": "x", "text": ""}]}))
    assert main(["sessions", "import", str(bad)]) == 2
    assert f"{bad}: turns[0].role: expected 'user' or 'model'" in capsys.readouterr().err


def test_corrupt_database_is_reported_once_and_the_command_goes_on(capsys):
    db = paths.data_dir() / "sessions.db"
    db.write_bytes(b"garbage" * 1000)
    assert main(["sessions", "list"]) == 0
    captured = capsys.readouterr()
    assert "no sessions yet" in captured.out
    assert captured.err.count("\n") == 1 and "moved it to" in captured.err
    moved = [p for p in db.parent.iterdir() if p.name.startswith("sessions.db.corrupt-")]
    assert len(moved) == 1 and moved[0].read_bytes() == b"garbage" * 1000
    assert main(["sessions", "list"]) == 0
    assert capsys.readouterr().err == ""
