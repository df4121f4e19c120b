"""Session export and import: JSON that round-trips, Markdown for people.

JSON layout (`format` "gptterm-session", `version` 2):
`{"format", "version", "session": {id, title, name, created, updated, model, preset,
sampling, memory, branched_from, branched_at},
"turns": [{index, role, text, model, preset, seed, token_ids, chunks, status, stats,
created, parent, chosen}, ...]}`. The turns are the session's whole tree, each after the
turn it follows: `parent` is that turn's place in the list (null: the first turn), and
`chosen` says which of the turns following one parent the session continues from (its
alternatives, oldest first). Database row ids are not exported; everything else is. A
reply written with the stage inspector on also has `inspect`: `{"top_k", "tokens"}`, what
every stage of the sampling chain made of each of its tokens (store.inspection); a turn
without it has none (older version 2 files never do).
The session's model, preset (a name) and sampling (overrides) came later: a file without
them imports as a session that has not chosen yet (None, None, {}). A version 1 file
(no tree, no memory) imports as one path, each turn following the one before.

Import (`parse_json`) checks every field, with ranges: times between 2000 and 2100,
seeds 0 <= seed < 2**63, token ids 0 <= id < 2**31, chunk times finite, never
decreasing, with gaps of at most 60 s, presets and stats flat objects of JSON scalars
with finite numbers, text without lone surrogates, sampling overrides by the preset
rules (`records.check_sampling`). The first bad field is one
`StoreError` line naming it and what is allowed.

Imported titles, names, ids, model and preset names and turn text may hold control
characters: they are stored as they are (an export round-trips), and every printer
shows them through `textsafe.inert` — the Markdown export here, and the CLI.
"""

from __future__ import annotations

import time
from typing import Any

from gptterm.store import inspection
from gptterm.store.records import (
    ROLES,
    STATUSES,
    Session,
    StoreError,
    Turn,
    check_sampling,
    chunks_problem,
    is_flat_object,
    is_number,
    is_seed,
    is_text,
    is_time,
    is_token_id,
    when,
)
from gptterm.textsafe import inert

FORMAT = "gptterm-session"
VERSION = 2
VERSIONS = (1, 2)  # what import reads
_TURN_FIELDS = ("index", "role", "text", "model", "preset", "seed", "token_ids", "chunks",
                "status", "stats", "created")
_TIME = "a time from 2000 to 2100 (seconds since 1970)"


def to_json(session: Session, turns: list[Turn], chosen: list[bool] | None = None) -> dict:
    """The export of `session` with `turns` (a tree: each after its parent, `parent_id`
    set; None `chosen`: every turn is chosen, a plain path)."""
    place = {t.id: i for i, t in enumerate(turns)}
    chosen = [True] * len(turns) if chosen is None else chosen
    return {
        "format": FORMAT,
        "version": VERSION,
        "session": {"id": session.id, "title": session.title, "name": session.name,
                    "created": session.created, "updated": session.updated,
                    "model": session.model, "preset": session.preset,
                    "sampling": session.sampling, "memory": session.memory,
                    "branched_from": session.branched_from, "branched_at": session.branched_at},
        "turns": [{**{f: getattr(t, f) for f in _TURN_FIELDS},
                   "parent": place.get(t.parent_id), "chosen": c,
                   **({"inspect": t.inspect} if t.inspect is not None else {})}
                  for t, c in zip(turns, chosen)],
    }


class _Check:
    """Raises one StoreError line, `WHERE: FIELD: expected WHAT`, for the first bad field."""

    def __init__(self, where: str):
        self.where = where

    def __call__(self, ok: bool, field: str, expected: str) -> None:
        if not ok:
            raise StoreError(f"{self.where}: {field}: expected {expected}")


Tree = list[tuple[int | None, bool]]  # per turn: its parent's place (None: first), chosen


def parse_json(data: Any, where: str = "import") -> tuple[Session, list[Turn], Tree]:
    """Check an exported session; raise StoreError naming the first bad field.

    Returns the session, its turns (in file order) and their tree: each turn's parent
    (a place in the list, before it) and whether it is the chosen one after that parent.
    """
    need = _Check(where)
    need(isinstance(data, dict), "top level", "a JSON object")
    need(data.get("format") == FORMAT, "format", f"{FORMAT!r} (a `sessions export` file)")
    version = data.get("version")
    need(type(version) is int and version in VERSIONS, "version",
         " or ".join(map(str, VERSIONS)))
    session = _parse_session(data.get("session"), need, tree=version >= 2)
    raw_turns = data.get("turns", [])
    need(isinstance(raw_turns, list), "turns", "a list")
    turns = [_parse_turn(t, i, session.id, need) for i, t in enumerate(raw_turns)]
    if version < 2:  # one path, numbered in file order
        return session, turns, [(i - 1 if i else None, True) for i in range(len(turns))]
    return session, turns, _parse_tree(raw_turns, turns, need)


def _parse_tree(raw: list, turns: list[Turn], need: _Check) -> Tree:
    """Each turn's parent and chosen flag; positions (`index`) grow along every path, and
    among the turns after one parent exactly one is chosen (absent: the newest)."""
    tree: Tree = []
    for i, (t, turn) in enumerate(zip(raw, turns)):
        parent = t.get("parent")
        need(parent is None or (type(parent) is int and 0 <= parent < i), f"turns[{i}].parent",
             f"null or the place of an earlier turn (0 to {i - 1})" if i else "null")
        chosen = t.get("chosen")
        need(chosen is None or isinstance(chosen, bool), f"turns[{i}].chosen",
             "true or false")
        low = -1 if parent is None else turns[parent].index
        index = t.get("index", low + 1)
        need(type(index) is int and low < index < 2**31, f"turns[{i}].index",
             f"an integer above the index of the turn it follows ({low})")
        turn.index = index
        tree.append((parent, chosen))
    groups: dict[int | None, list[int]] = {}
    for i, (parent, _) in enumerate(tree):
        groups.setdefault(parent, []).append(i)
    chosen = [False] * len(tree)
    for parent, members in groups.items():
        marked = [i for i in members if tree[i][1]]
        if all(tree[i][1] is None for i in members):
            marked = members[-1:]  # not said: the newest
        need(len(marked) == 1, f"turns[{members[-1]}].chosen",
             "exactly one chosen turn among those following "
             + ("no turn (the first turns)" if parent is None else f"turns[{parent}]"))
        chosen[marked[0]] = True
    return [(parent, chosen[i]) for i, (parent, _) in enumerate(tree)]


def _parse_session(s: Any, need: _Check, *, tree: bool) -> Session:
    need(isinstance(s, dict), "session", "an object")
    need(is_text(s.get("id")) and s["id"] != "", "session.id", "a non-empty string")
    need(is_text(s.get("title", "")), "session.title", "a string")
    need(s.get("name") is None or is_text(s["name"]), "session.name", "a string or null")
    now = time.time()
    for key in ("created", "updated"):
        need(is_time(s.get(key, now)), f"session.{key}", _TIME)
    for key in ("model", "preset"):
        need(s.get(key) is None or is_text(s[key]), f"session.{key}", "a string or null")
    sampling = check_sampling(s.get("sampling", {}), f"{need.where}: session.sampling")
    memory, from_, at = "", None, None
    if tree:  # version 2
        memory = s.get("memory", "")
        need(is_text(memory), "session.memory", "a string")
        from_ = s.get("branched_from")
        need(from_ is None or is_text(from_), "session.branched_from", "a string or null")
        at = s.get("branched_at")
        need(at is None or (type(at) is int and 0 <= at < 2**31), "session.branched_at",
             "null or an integer >= 0")
    return Session(s["id"], s.get("title", ""), s.get("name"), float(s.get("created", now)),
                   float(s.get("updated", now)), model=s.get("model"), preset=s.get("preset"),
                   sampling=sampling, memory=memory, branched_from=from_, branched_at=at)


def _parse_turn(t: Any, i: int, session_id: str, need: _Check) -> Turn:
    at = f"turns[{i}]"
    need(isinstance(t, dict), at, "an object")
    need(t.get("role") in ROLES, f"{at}.role", " or ".join(repr(r) for r in ROLES))
    need(is_text(t.get("text")), f"{at}.text", "a string")
    need(t.get("model") is None or is_text(t["model"]), f"{at}.model", "a string or null")
    need(t.get("preset") is None or is_flat_object(t["preset"], lists=True, objects=True),
         f"{at}.preset",
         "null or an object of JSON scalars or lists of them (numbers finite)")
    seed = t.get("seed")
    need(seed is None or is_seed(seed), f"{at}.seed", "null or an integer 0 <= seed < 2**63")
    ids = t.get("token_ids", [])
    need(isinstance(ids, list) and all(is_token_id(x) for x in ids), f"{at}.token_ids",
         "a list of integers 0 <= id < 2**31")
    chunks = t.get("chunks", [])
    problem = chunks_problem(chunks)
    need(not problem, f"{at}.chunks", problem)
    status = t.get("status", "complete")
    need(status in STATUSES, f"{at}.status", " | ".join(STATUSES))
    stats = t.get("stats", {})
    # Lists: a stepped turn's "picked" positions.
    need(is_flat_object(stats, lists=True), f"{at}.stats",
         "an object of JSON scalars or lists of them (numbers finite)")
    created = t.get("created", time.time())
    need(is_time(created), f"{at}.created", _TIME)
    stages = t.get("inspect")
    if stages is not None:
        need(isinstance(stages, dict), f"{at}.inspect", "null or {\"top_k\", \"tokens\"}")
        problem = inspection.problem(stages.get("top_k"), stages.get("tokens"))
        need(not problem, f"{at}.inspect.{problem.split(':')[0]}",
             problem.split(": expected ", 1)[-1])
        stages = {"top_k": stages["top_k"], "tokens": stages["tokens"]}
    return Turn(id=0, session_id=session_id, index=i, role=t["role"], text=t["text"],
                model=t.get("model"), preset=t.get("preset"), seed=seed,
                token_ids=list(ids), chunks=[list(c) for c in chunks],
                # An imported turn is never being streamed: an unfinished one was cut off.
                status="interrupted" if status == "partial" else status,
                stats=dict(stats), created=float(created), inspect=stages)


# ------------------------------------------------------------------ for people


def _one(text: Any) -> str:
    """A label made safe for one line of a terminal or Markdown file."""
    return inert("" if text is None else str(text), single_line=True)


def turn_heading(turn: Turn) -> str:
    """`You`, or the model turn's model, preset, seed and status (inert, one line)."""
    if turn.role == "user":
        return "You"
    parts = [_one(turn.model or "model")]
    if turn.preset:
        parts.append(_one(turn.preset.get("name", "custom")))
    if turn.seed is not None:
        parts.append(f"seed {turn.seed}")
    if turn.status != "complete":
        parts.append(_one(turn.status))
    if isinstance(turn.stats, dict) and turn.stats.get("edited") is True:
        parts.append("edited")
    picked = turn.stats.get("picked") if isinstance(turn.stats, dict) else None
    if isinstance(picked, list) and picked:  # step mode: tokens the user chose
        parts.append(f"{len(picked)} picked by hand")
    return " · ".join(parts)


def alternative_mark(turn: Turn) -> str:
    """`reply 2/3` (or `prompt 2/3`) for a turn with alternatives; '' for one without."""
    if turn.alternatives <= 1:
        return ""
    kind = "reply" if turn.role == "model" else "prompt"
    return f"{kind} {turn.alternative}/{turn.alternatives}"


def turn_stats_line(turn: Turn) -> str:
    """Tokens, seconds, speed and first-token time, from whichever stats are numbers."""
    st = turn.stats if isinstance(turn.stats, dict) else {}

    def num(key: str) -> float | None:
        v = st.get(key)
        return v if is_number(v) else None

    n, seconds, ttft = num("n_tokens"), num("seconds"), num("ttft")
    bits = []
    if n is not None:
        bits.append(f"{n} tokens")
    if seconds:
        bits.append(f"{seconds:.2f} s")
        if n:
            bits.append(f"{n / seconds:.1f} tok/s")
    if ttft is not None:
        bits.append(f"first token {ttft * 1000:.0f} ms")
    return ", ".join(bits)


def to_markdown(session: Session, turns: list[Turn]) -> str:
    """The session for people; every stored string passes through `inert`."""
    lines = [f"# {_one(session.label)}", ""]
    meta = [f"session `{_one(session.id)}`"]
    if session.name:
        meta.append(f"name `{_one(session.name)}`")
    meta.append(f"created {when(session.created)}, updated {when(session.updated)}")
    lines += ["_" + ", ".join(meta) + "_", ""]
    if session.memory:
        lines += ["## Memory (pinned at the start of the context)", "",
                  inert(session.memory).strip("\n"), ""]
    for turn in turns:  # the chosen path; a turn with alternatives says which one it is
        mark = alternative_mark(turn)
        lines += [f"## {turn_heading(turn)}" + (f" · {mark}" if mark else ""), ""]
        if turn.role == "model" and turn.preset:
            summary = ", ".join(f"{_one(k)}={_one(v)}" for k, v in sorted(turn.preset.items())
                                if k not in ("name", "description", "order"))
            stats = turn_stats_line(turn)
            lines += [f"<!-- preset: {summary.replace('--', '- -')} -->"]
            if stats:
                lines += [f"_{stats}_"]
            lines.append("")
        text = inert(turn.text).strip("\n")
        lines += [text if text else "_(empty)_", ""]
    return "\n".join(lines).rstrip() + "\n"


def story(turns: list[Turn]) -> str:
    """The session's whole text as the model saw it, with no headers.

    The turns' texts joined exactly as stored: each turn already begins with the
    separator that joined it to the text before (recorder.separator_for), so nothing is
    added. The same join as `protocol.context_text` and `Store.context_text`.
    """
    return "".join(turn.text for turn in turns)
