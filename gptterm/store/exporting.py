"""Session export and import: JSON that round-trips, Markdown for people.

JSON layout (`format` "gptterm-session", `version` 1):
`{"format", "version", "session": {id, title, name, created, updated},
"turns": [{index, role, text, model, preset, seed, token_ids, chunks, status, stats,
created}, ...]}`. Database row ids are not exported; everything else is.
"""

from __future__ import annotations

import time
from typing import Any

from gptterm.store.core import ROLES, STATUSES, Session, StoreError, Turn

FORMAT = "gptterm-session"
VERSION = 1
_TURN_FIELDS = ("index", "role", "text", "model", "preset", "seed", "token_ids", "chunks",
                "status", "stats", "created")


def to_json(session: Session, turns: list[Turn]) -> dict:
    return {
        "format": FORMAT,
        "version": VERSION,
        "session": {"id": session.id, "title": session.title, "name": session.name,
                    "created": session.created, "updated": session.updated},
        "turns": [{f: getattr(t, f) for f in _TURN_FIELDS} for t in turns],
    }


def parse_json(data: Any, where: str = "import") -> tuple[Session, list[Turn]]:
    """Check an exported session; raise StoreError naming the first bad field."""

    def need(ok: bool, field: str, expected: str) -> None:
        if not ok:
            raise StoreError(f"{where}: {field}: expected {expected}")

    def number(v: Any) -> bool:
        return isinstance(v, (int, float)) and not isinstance(v, bool)

    def opt_str(v: Any) -> bool:
        return v is None or isinstance(v, str)

    need(isinstance(data, dict), "top level", "a JSON object")
    need(data.get("format") == FORMAT, "format", f"{FORMAT!r} (a `sessions export` file)")
    need(data.get("version") == VERSION, "version", f"{VERSION}")
    s = data.get("session")
    need(isinstance(s, dict), "session", "an object")
    need(isinstance(s.get("id"), str) and s["id"] != "", "session.id", "a non-empty string")
    need(isinstance(s.get("title", ""), str), "session.title", "a string")
    need(opt_str(s.get("name")), "session.name", "a string or null")
    now = time.time()
    for key in ("created", "updated"):
        need(number(s.get(key, now)), f"session.{key}", "a number (seconds since 1970)")
    session = Session(s["id"], s.get("title", ""), s.get("name"), float(s.get("created", now)),
                      float(s.get("updated", now)))
    raw_turns = data.get("turns", [])
    need(isinstance(raw_turns, list), "turns", "a list")
    turns = []
    for i, t in enumerate(raw_turns):
        at = f"turns[{i}]"
        need(isinstance(t, dict), at, "an object")
        need(t.get("role") in ROLES, f"{at}.role", " or ".join(repr(r) for r in ROLES))
        need(isinstance(t.get("text"), str), f"{at}.text", "a string")
        need(opt_str(t.get("model")), f"{at}.model", "a string or null")
        need(t.get("preset") is None or isinstance(t["preset"], dict), f"{at}.preset",
             "an object or null")
        seed = t.get("seed")
        need(seed is None or (isinstance(seed, int) and not isinstance(seed, bool)),
             f"{at}.seed", "an integer or null")
        ids = t.get("token_ids", [])
        need(isinstance(ids, list) and all(isinstance(x, int) and not isinstance(x, bool)
                                           for x in ids), f"{at}.token_ids", "a list of integers")
        chunks = t.get("chunks", [])
        need(isinstance(chunks, list) and all(
            isinstance(c, list) and len(c) >= 2 and number(c[0]) and isinstance(c[1], str)
            for c in chunks), f"{at}.chunks", "a list of [seconds, text] pairs")
        need(t.get("status", "complete") in STATUSES, f"{at}.status", " | ".join(STATUSES))
        need(isinstance(t.get("stats", {}), dict), f"{at}.stats", "an object")
        need(number(t.get("created", now)), f"{at}.created", "a number")
        turns.append(Turn(id=0, session_id=session.id, index=i, role=t["role"], text=t["text"],
                          model=t.get("model"), preset=t.get("preset"), seed=seed,
                          token_ids=list(ids), chunks=[list(c) for c in chunks],
                          status=t.get("status", "complete"), stats=dict(t.get("stats", {})),
                          created=float(t.get("created", now))))
    return session, turns


def _when(seconds: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(seconds))


def turn_heading(turn: Turn) -> str:
    """`You`, or the model turn's model, preset, seed and status."""
    if turn.role == "user":
        return "You"
    parts = [turn.model or "model"]
    if turn.preset:
        parts.append(str(turn.preset.get("name", "custom")))
    if turn.seed is not None:
        parts.append(f"seed {turn.seed}")
    if turn.status != "complete":
        parts.append(turn.status)
    return " · ".join(parts)


def turn_stats_line(turn: Turn) -> str:
    st = turn.stats
    bits = []
    if "n_tokens" in st:
        bits.append(f"{st['n_tokens']} tokens")
    if st.get("seconds"):
        bits.append(f"{st['seconds']:.2f} s")
        if st.get("n_tokens"):
            bits.append(f"{st['n_tokens'] / st['seconds']:.1f} tok/s")
    if st.get("ttft") is not None and "ttft" in st:
        bits.append(f"first token {st['ttft'] * 1000:.0f} ms")
    return ", ".join(bits)


def to_markdown(session: Session, turns: list[Turn]) -> str:
    lines = [f"# {session.label}", ""]
    meta = [f"session `{session.id}`"]
    if session.name:
        meta.append(f"name `{session.name}`")
    meta.append(f"created {_when(session.created)}, updated {_when(session.updated)}")
    lines += ["_" + ", ".join(meta) + "_", ""]
    for turn in turns:
        lines += [f"## {turn_heading(turn)}", ""]
        if turn.role == "model" and turn.preset:
            summary = ", ".join(f"{k}={v}" for k, v in sorted(turn.preset.items())
                                if k not in ("name", "description", "order"))
            stats = turn_stats_line(turn)
            lines += [f"<!-- preset: {summary} -->"]
            if stats:
                lines += [f"_{stats}_"]
            lines.append("")
        text = turn.text.strip("\n")
        lines += [text if text else "_(empty)_", ""]
    return "\n".join(lines).rstrip() + "\n"
