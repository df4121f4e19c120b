"""A turn made with the modern samplers keeps its preset (logit_bias, lists) and list stats
through the store and a JSON export/import."""

from __future__ import annotations

import json
import math

from gptterm.presets import Preset
from gptterm.store import Store


def test_a_turn_keeps_its_logit_bias_preset_and_list_stats(tmp_path):
    preset = Preset(name="banned", method="sample").replace(
        logit_bias={"50256": -math.inf, "hello": 2.5}, dry_multiplier=0.8,
        banned_strings=["the end"])
    store = Store(tmp_path / "sessions.db")
    s = store.create_session()
    store.add_turn(s.id, "user", "Once")
    w = store.begin_turn(s.id, model="tiny", preset=preset.values(), seed=3)
    w.append(" upon", [7])
    w.finish("complete", {"n_tokens": 1, "picked": [0]})
    (_, turn) = store.turns(s.id)
    assert turn.preset == json.loads(json.dumps(preset.values()))
    assert turn.preset["logit_bias"] == {"50256": -math.inf, "hello": 2.5}
    assert turn.stats["picked"] == [0]
    # The stored preset rebuilds the same Preset, and an export imports back equal.
    assert Preset().replace(**{k: v for k, v in turn.preset.items() if k != "name"}) \
        .logit_bias == preset.logit_bias
    fresh = Store(tmp_path / "other.db")
    copy = fresh.import_json(json.loads(json.dumps(store.export_json(s.id))))
    assert fresh.turns(copy.id)[1].preset == turn.preset
    assert fresh.turns(copy.id)[1].stats["picked"] == [0]
    store.close()
    fresh.close()


def test_a_nested_object_deeper_than_one_level_is_still_refused(tmp_path):
    store = Store(tmp_path / "sessions.db")
    s = store.create_session()
    w = store.begin_turn(s.id, model="tiny", preset={"name": "x", "logit_bias": {"a": {"b": 1}}})
    w.finish("complete")
    assert store.turns(s.id)[0].preset is None
    store.close()
