"""Recording a generation into a stored session (`gptterm generate --session NAME|ID`).

`SessionRecorder` continues a stored session: the Generate prompt is the session's
whole text plus the new prompt, so the engine's KV cache and the transcript line
up. Nothing is written until the engine reports `Started`: a model that fails to
load leaves the session as it was. Then the user turn is added and the model turn
streams into a `TurnWriter` (autosaved), ending with the Done reason as its status.
"""

from __future__ import annotations

import argparse
from typing import Any

from gptterm.protocol import Done, Event, Failed, Generate, Started, TextDelta
from gptterm.store import Store, StoreError, TurnWriter

# Done.reason -> stored turn status.
STATUS_FOR_REASON = {"eos": "complete", "length": "complete", "stop": "complete",
                     "cancelled": "cancelled"}


def status_for(end: Done | Failed) -> str:
    """The stored status of a turn that ended with `end` (the CLI and the TUI agree)."""
    if isinstance(end, Failed):
        return "failed"
    return STATUS_FOR_REASON.get(end.reason, "complete")


def stats_for(end: Done) -> dict[str, Any]:
    """The stats a turn records when it is done; prompt and reused token counts were
    already recorded from `Started`."""
    stats: dict[str, Any] = {"reason": end.reason, "n_tokens": end.n_tokens,
                             "seconds": round(end.seconds, 4), "ttft": round(end.ttft, 4)}
    if end.context_tokens:
        stats["context_tokens"] = end.context_tokens
    if end.seconds > 0:
        stats["tokens_per_second"] = round(end.n_tokens / end.seconds, 2)
    return stats


class SessionRecorder:
    """Stores one prompt and the model's reply in the session `ref` (created if missing).

    Use `session_id` and `context` to build the Generate, then pass every engine
    event to `on_event(event, model_name, command)`.
    """

    def __init__(self, store: Store, ref: str, prompt: str):
        self.store = store
        self.ref = ref
        self.prompt = prompt
        try:
            self.session = store.find_session(ref)
        except StoreError:
            self.session = None  # created on Started, named `ref`
        self.session_id = self.session.id if self.session else f"new:{ref}"
        before = store.context_text(self.session.id) if self.session else ""
        self.context = before + prompt
        self.writer: TurnWriter | None = None

    def begin(self, model: str | None, command: Generate) -> TurnWriter:
        """Write the user turn and open the model turn (called on Started)."""
        if self.session is None:
            try:
                self.session = self.store.create_session(name=self.ref)
            except StoreError:  # another process just created it
                self.session = self.store.find_session(self.ref)
        if self.prompt:
            self.store.add_turn(self.session.id, "user", self.prompt)
        preset = command.preset.values()
        if command.max_new_tokens is not None:
            preset["max_new_tokens"] = command.max_new_tokens
        seed = command.seed if command.seed is not None else command.preset.seed
        self.writer = self.store.begin_turn(self.session.id, model=model, preset=preset,
                                            seed=seed)
        return self.writer

    def on_event(self, event: Event, model: str | None, command: Generate) -> None:
        if isinstance(event, Started):
            self.begin(model, command).set_stats(prompt_tokens=event.prompt_tokens,
                                                 reused_tokens=event.reused_tokens)
        elif self.writer is None:
            if isinstance(event, Failed):  # failed before it started: nothing stored
                return
        elif isinstance(event, TextDelta):
            if event.replace:
                self.writer.replace_text(event.text, event.token_ids)
            else:
                self.writer.append(event.text, event.token_ids)
        elif isinstance(event, Done):
            self.writer.finish(status_for(event), stats_for(event))
        elif isinstance(event, Failed):
            self.writer.finish("failed", {"error": event.error})

    def close(self) -> None:
        self.store.close()


def open_recorder(args: argparse.Namespace, prompt: str) -> SessionRecorder | None:
    """The recorder for `generate --session REF`, or None without `--session`.

    The generate command always sends a concrete seed (drawn when neither `--seed`
    nor the preset gives one), which the recorder stores with the turn so that
    `gptterm replay --verify` can re-run it.
    """
    ref = getattr(args, "session", None)
    if not ref:
        return None
    from gptterm.commands.sessions import open_store

    return SessionRecorder(open_store(), ref, prompt)
