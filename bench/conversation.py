"""A scripted writing session on the shipped default model: does the cache keep working?

Twelve model turns in one session through the engine and the turn recorder (the same
path as the TUI): ten prompts, one reply cancelled after a few tokens, and one turn
continued without a prompt (the TUI's Ctrl+G). The replies are long enough that the
conversation runs well past the model's window. Prints, per turn, the prompt tokens in
the window, the tokens reused from the cache, the window start and the context used;
then how many later turns reused the cache (target: at least 9 of 11), and what
`replay --verify` says of every turn (target: identical, all 12).

    python bench/conversation.py [--model shakespeare-mini] [--preset creative]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

PROMPTS = [
    "Now is the winter of our discontent", "What say you, my lord?", "Speak, I pray thee.",
    "And then the king came in.", "O, that this too too solid flesh would melt",
    "CONTINUE", "Go on.", "CANCEL Tell me of the sea.", "Where is the queen?",
    "Away with him!", "Sweet love, farewell.", "And so the night came on.",
]
CANCEL_AFTER = 5  # text deltas before the cancelled turn is stopped


@dataclass
class TurnRow:
    kind: str  # prompt | continue | cancelled
    prompt_tokens: int
    reused_tokens: int
    window_start: int
    context_tokens: int
    n_tokens: int


def converse(client, store, model: str, preset, seed: int = 7) -> tuple[str, list[TurnRow]]:
    """Run the scripted session; returns (session id, one row per model turn)."""
    from gptterm.protocol import Cancel, TextDelta
    from gptterm.recorder import TurnRecorder, open_session

    session_id = open_session(store, f"conversation-{seed}")
    rows = []
    for i, line in enumerate(PROMPTS):
        kind = "continue" if line == "CONTINUE" else "cancelled" if line.startswith("CANCEL") \
            else "prompt"
        prompt = None if kind == "continue" else line.removeprefix("CANCEL ")
        recorder = TurnRecorder(store, session_id, model, preset, seed=seed + i)
        command = recorder.start(prompt)
        deltas = 0

        def on_event(event, recorder=recorder, command=command, kind=kind) -> None:
            nonlocal deltas
            recorder.on_event(event)
            if kind == "cancelled" and isinstance(event, TextDelta):
                deltas += 1
                if deltas == CANCEL_AFTER:
                    client.engine.submit(Cancel(command.request_id))

        end = client.generate(command, on_event)
        started = recorder.reply.started
        rows.append(TurnRow(kind, started.prompt_tokens, started.reused_tokens,
                            started.window_start, end.context_tokens, end.n_tokens))
    return session_id, rows


def main() -> int:
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from gptterm import replay
    from gptterm.engine.client import EngineClient
    from gptterm.presets import DEFAULT_PRESET, load_presets
    from gptterm.store import Store

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="shakespeare-mini")
    parser.add_argument("--preset", default=DEFAULT_PRESET)
    args = parser.parse_args()
    preset = load_presets()[0][args.preset]
    with tempfile.TemporaryDirectory() as tmp, EngineClient() as client:
        store = Store(Path(tmp) / "sessions.db")
        loaded = client.load(args.model)
        session_id, rows = converse(client, store, loaded.name, preset)
        print(f"{loaded.name} (window {loaded.n_ctx}), preset {preset.name}")
        print(f"{'turn':>4} {'kind':<9} {'prompt':>6} {'reused':>6} {'start':>5} "
              f"{'ctx':>4} {'new':>4}")
        for n, row in enumerate(rows, 1):
            print(f"{n:>4} {row.kind:<9} {row.prompt_tokens:>6} {row.reused_tokens:>6} "
                  f"{row.window_start:>5} {row.context_tokens:>4} {row.n_tokens:>4}")
        reusing = sum(row.reused_tokens > 0 for row in rows[1:])
        print(f"later turns that reused the cache: {reusing} of {len(rows) - 1} (target >= 9)")
        with replay.EngineRunner() as runner:
            checks = list(replay.verify(store.turns(session_id), runner))
        for check in checks:
            print(check.line())
        same = sum(c.ok for c in checks)
        print(f"replay --verify: {same} of {len(checks)} model turns identical")
        store.close()
    return 0 if reusing >= 9 and same == len(checks) == len(rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
