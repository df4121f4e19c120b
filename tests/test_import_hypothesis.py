"""Property: any JSON (random, hostile, or a valid export with one field broken) given to
`sessions import` ends as one error line or one valid session; never a traceback, and the
sessions already stored never change."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from gptterm.cli import main
from gptterm.store import Store, StoreError
from gptterm.store.records import is_time

HOSTILE_TEXT = st.text(alphabet=st.sampled_from(
    ["a", " ", "\n", "\x1b", "\x07", "\x9b", "\x9d", "\u202e", "\ud800", "\udfff", "\x00",
     "é", "한", "]", "[", "\""]), max_size=12)
NUMBERS = st.one_of(st.integers(min_value=-(2**80), max_value=2**80),
                    st.floats(allow_nan=True, allow_infinity=True),
                    st.sampled_from([0, 1.7e9, 1e9, 1e300, -1, 2**63, 2**63 - 1, 2**31]))
SCALARS = st.one_of(st.none(), st.booleans(), NUMBERS, HOSTILE_TEXT)
VALUES = st.recursive(SCALARS, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(HOSTILE_TEXT, inner, max_size=4)),
    max_leaves=12)


def _valid() -> dict:
    return {"format": "gptterm-session", "version": 1,
            "session": {"id": "aaaa1111", "title": "t", "name": "n", "created": 1.7e9,
                        "updated": 1.7e9},
            "turns": [{"role": "user", "text": "hi", "created": 1.7e9},
                      {"role": "model", "text": " there", "model": "m",
                       "preset": {"name": "warm", "temperature": 0.7, "stop": ["\n"]},
                       "seed": 5, "token_ids": [1, 2], "chunks": [[0.1, " the"], [0.2, "re"]],
                       "status": "complete", "stats": {"n_tokens": 2, "seconds": 0.2},
                       "created": 1.7e9}]}


SESSION_KEYS = ["id", "title", "name", "created", "updated"]
TURN_KEYS = ["role", "text", "model", "preset", "seed", "token_ids", "chunks", "status",
             "stats", "created", "index"]


@st.composite
def broken_exports(draw) -> object:
    """A valid export with one field (at any depth we know) replaced by any value."""
    data = _valid()
    where = draw(st.sampled_from(["top", "session", "turn", "chunk", "preset", "stats"]))
    value = draw(VALUES)
    if where == "top":
        data[draw(st.sampled_from(["format", "version", "session", "turns"]))] = value
    elif where == "session":
        data["session"][draw(st.sampled_from(SESSION_KEYS))] = value
    elif where == "turn":
        data["turns"][1][draw(st.sampled_from(TURN_KEYS))] = value
    elif where == "chunk":
        data["turns"][1]["chunks"][draw(st.integers(0, 1))][draw(st.integers(0, 1))] = value
    elif where == "preset":
        data["turns"][1]["preset"][draw(HOSTILE_TEXT)] = value
    else:
        data["turns"][1]["stats"][draw(st.sampled_from(["seconds", "reason", "n_tokens"]))] = value
    return data


ANY_IMPORT = st.one_of(broken_exports(), VALUES)


def _snapshot(store: Store) -> list[dict]:
    return [store.export_json(s.id) for s in store.list_sessions()]


def _is_valid_session(store: Store, session_id: str) -> bool:
    for turn in store.turns(session_id):
        for chunk in turn.chunks:
            if not math.isfinite(chunk[0]):
                return False
    session = store.get_session(session_id)
    return is_time(session.created) and is_time(session.updated)


PROPERTY = settings(max_examples=300, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture,
                                           HealthCheck.too_slow])


@PROPERTY
@given(data=ANY_IMPORT)
def test_store_import_is_one_line_or_a_valid_session(tmp_path, data):
    with Store(tmp_path / "prop.db") as store:
        if not store.list_sessions():
            keep = store.create_session(name="keep")
            store.add_turn(keep.id, "user", "the original")
        before = _snapshot(store)
        try:
            session = store.import_json(data)
        except StoreError as exc:
            event("refused")
            assert "\n" not in str(exc)
            assert _snapshot(store) == before
            return
        event("imported")
        assert _is_valid_session(store, session.id)
        assert re.fullmatch("[0-9a-f]{8}", session.id)
        after = _snapshot(store)
        assert all(s in after for s in before) and len(after) == len(before) + 1
        # What was let in can be shown, exported and exported again.
        json.dumps(store.export_json(session.id), allow_nan=False)
        store.export_markdown(session.id)


@PROPERTY
@given(data=ANY_IMPORT)
def test_cli_import_never_prints_a_traceback(tmp_path, capsys, data):
    path = Path(tmp_path) / "in.json"
    path.write_text(json.dumps(data), encoding="utf-8", errors="surrogatepass")
    with Store() as store:
        before = _snapshot(store)
    code = main(["sessions", "import", str(path)])
    out, err = capsys.readouterr()
    if code == 2:
        assert err.startswith("gptterm: ") and err.count("\n") == 1, err
        with Store() as store:
            assert _snapshot(store) == before
        return
    assert code == 0 and err == "" and out.startswith("imported ")
    assert not re.search("[\x00-\x08\x0b-\x1f\x7f-\x9f]", out)
    new_id = out.split()[1].rstrip(":")
    for argv in (["sessions", "show", new_id], ["sessions", "list"],
                 ["sessions", "export", new_id, "--format", "json"]):
        assert main(argv) == 0
        shown = capsys.readouterr().out
        assert not re.search("[\x00-\x08\x0b-\x1f\x7f-\x9f]", shown)
