"""A reply's chain stages (`protocol.TokenInspect`, one per token) as JSON: one shape for
`generate --json --inspect`, the store's `turn_inspect` rows and the session export.

Per token: `{"chosen": ID, "text": TEXT, "stages": [{"stage": NAME, "top": [[ID, TEXT, P],
...]}, ...]}`, stages in chain order ("model" first, "final" last). The `generate` lines
leave out "text" (the contract names only "chosen" and "stages"); the store keeps it, so
an old reply's tokens show without a tokenizer.

`problem` checks data from the store or an import file with ranges (token ids as the
store's, probabilities in [0, 1], at most `top_k` candidates per stage, `top_k` at most
MAX_TOP_K), so what is shown never came from a damaged row.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from gptterm.protocol import StageTop, TokenInspect
from gptterm.store.records import is_number, is_text, is_token_id

MAX_TOP_K = 50  # candidates per stage a Generate may ask for (bounds a stored turn)
MAX_STAGES = 64  # stages per token: every step of a chain and then some


def token_json(item: TokenInspect, *, text: bool = True) -> dict:
    """One token's stages as JSON (`text`: with the chosen token's own text)."""
    out: dict[str, Any] = {"chosen": item.chosen}
    if text:
        out["text"] = item.text
    out["stages"] = [{"stage": s.stage, "top": [[i, t, p] for i, t, p in s.top]}
                     for s in item.stages]
    return out


def to_json(items: Sequence[TokenInspect], *, text: bool = True) -> list[dict]:
    return [token_json(item, text=text) for item in items]


def problem(top_k: Any, data: Any) -> str:
    """Why (`top_k`, `data`) is not a reply's stages ('' when it is): what was expected."""
    if not (type(top_k) is int and 1 <= top_k <= MAX_TOP_K):
        return f"top_k: expected an integer from 1 to {MAX_TOP_K}"
    if not isinstance(data, list):
        return "tokens: expected a list"
    for n, entry in enumerate(data):
        where = f"tokens[{n}]"
        if not (isinstance(entry, dict) and is_token_id(entry.get("chosen"))
                and is_text(entry.get("text", "")) and isinstance(entry.get("stages"), list)
                and len(entry["stages"]) <= MAX_STAGES):
            return (f"{where}: expected {{\"chosen\": a token id, \"text\": a string, "
                    f"\"stages\": a list of at most {MAX_STAGES}}}")
        for s, stage in enumerate(entry["stages"]):
            top = stage.get("top") if isinstance(stage, dict) else None
            if not (isinstance(stage, dict) and is_text(stage.get("stage"))
                    and isinstance(top, list) and len(top) <= top_k
                    and all(_candidate(c) for c in top)):
                return (f"{where}.stages[{s}]: expected {{\"stage\": a name, \"top\": at most "
                        f"{top_k} [token id, text, probability from 0 to 1]}}")
    return ""


def _candidate(c: Any) -> bool:
    return (isinstance(c, list) and len(c) == 3 and is_token_id(c[0]) and is_text(c[1])
            and is_number(c[2]) and 0 <= c[2] <= 1)


def from_json(data: list) -> tuple[TokenInspect, ...]:
    """Checked data (`problem` said '') as protocol records."""
    return tuple(TokenInspect(e["chosen"], tuple(
        StageTop(s["stage"], tuple((c[0], c[1], float(c[2])) for c in s["top"]))
        for s in e["stages"]), e.get("text", "")) for e in data)
