"""`gptterm generate PROMPT`: stream a continuation to stdout (or JSON events)."""

from __future__ import annotations

import argparse
import json
import random
import sys

from gptterm.cli import UsageError
from gptterm.cli_types import int_range, positive_int, read_text, seed_arg
from gptterm.config import THREADS_MAX
from gptterm.commands.sessions import guarded


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("generate", help="stream a continuation of PROMPT to stdout")
    p.add_argument("prompt", metavar="PROMPT", help="the text to continue; - reads stdin")
    p.add_argument("--model", help="catalog name, hub id or checkpoint directory")
    p.add_argument("--preset", help="sampler preset name (see `gptterm presets`)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override one preset field, e.g. --set temperature=0.7 (repeatable)")
    p.add_argument("--max-new-tokens", type=positive_int,
                   help="tokens to generate at most (at most half the model's window)")
    p.add_argument("--seed", type=seed_arg, help="random seed (sampling presets)")
    p.add_argument("--threads", type=int_range(1, THREADS_MAX),
                   help="CPU threads for the model (default: picked for the model's size)")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--json", action="store_true", help="one JSON object per event per line")
    p.add_argument("--session", metavar="NAME|ID",
                   help="append the prompt and reply to this stored session (created if "
                        "missing) and continue from its text")
    p.add_argument("--stats", action="store_true",
                   help="print tokens, ttft_ms, tok_per_s, reused on stderr at the end")
    p.set_defaults(func=run)


def resolve_preset(name: str | None, overrides: list[str]):
    """The preset named `name` (or the default) with `--set` overrides applied."""
    from gptterm import presets

    loaded, failed = presets.load_presets()
    name = name or presets.DEFAULT_PRESET
    base = loaded.get(name)
    if base is None:
        broken = [line for line in failed if f"{name}.toml" in line]
        if broken:
            raise UsageError(broken[0])
        if name != presets.DEFAULT_PRESET:
            known = ", ".join(sorted(loaded)) or "none"
            raise UsageError(f"--preset {name!r}: no such preset (known: {known})")
        base = presets.Preset(name=name)  # the default file is missing: neutral values
    try:
        return presets.apply_assignments(base, overrides)
    except presets.PresetError as exc:
        raise UsageError(str(exc)) from None


def event_json(event) -> dict | None:
    """The `--json` line for an engine event (None for events not shown)."""
    from gptterm import protocol as p

    if isinstance(event, p.Started):
        return {"event": "started", "prompt_tokens": event.prompt_tokens,
                "reused_tokens": event.reused_tokens, "window_start": event.window_start}
    if isinstance(event, p.TextDelta):
        data = {"event": "text", "text": event.text, "token_ids": list(event.token_ids)}
        if event.replace:
            data["replace"] = True
        return data
    if isinstance(event, p.Done):
        return {"event": "done", "reason": event.reason, "n_tokens": event.n_tokens,
                "seconds": round(event.seconds, 4), "ttft": round(event.ttft, 4),
                "max_new_tokens": event.max_new_tokens}
    if isinstance(event, p.Failed):
        return {"event": "failed", "error": event.error}
    return None


class StdoutPrinter:
    """Writes text deltas as they come; a beam search's replacements print once, at the end.

    Model output is made inert (control characters shown, not sent) when stdout is a
    terminal. A write that fails (a closed pipe, a full disk) is kept in `broken`; the
    caller then cancels the generation.
    """

    def __init__(self, as_json: bool, stream=None):
        self.as_json = as_json
        self.out = stream or sys.stdout
        self.inert = not as_json and self.out.isatty()
        self.replaced: str | None = None
        self.wrote_text = False
        self.broken: OSError | None = None

    def __call__(self, event) -> None:
        if self.broken is None:
            try:
                self._print(event)
            except OSError as exc:  # BrokenPipeError, ENOSPC, ...
                self.broken = exc

    def _write(self, text: str) -> None:
        if self.inert:
            from gptterm.textsafe import inert

            text = inert(text)
        self.out.write(text)

    def _print(self, event) -> None:
        from gptterm import protocol as p

        if self.as_json:
            line = event_json(event)
            if line is not None:
                self.out.write(json.dumps(line, ensure_ascii=False) + "\n")
                self.out.flush()
            return
        if isinstance(event, p.TextDelta):
            if event.replace:
                self.replaced = event.text
            else:
                self._write(event.text)
                self.out.flush()
                self.wrote_text = True
        elif isinstance(event, (p.Done, p.Failed)):
            if self.replaced is not None:
                self._write(self.replaced)
                self.wrote_text = True
            if self.wrote_text:
                self.out.write("\n")
            self.out.flush()


@guarded
def run(args: argparse.Namespace) -> int:
    """Stream one reply; a store or stdout failure ends it with one line (`guarded`)."""
    from gptterm import catalog
    from gptterm.engine.client import EngineClient, ModelLoadError
    from gptterm.protocol import Cancel, Failed, Generate, Reply, Started, new_request_id
    from gptterm.engine.threads import requested_threads
    from gptterm.recorder import window_notices

    preset = resolve_preset(args.preset, args.overrides)
    try:
        prompt = read_text(args.prompt)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    threads = requested_threads(args.threads)
    with EngineClient(device=args.device, threads=threads) as client:
        try:
            loaded = client.load(args.model or catalog.DEFAULT_MODEL, args.device)
        except ModelLoadError as exc:
            raise UsageError(str(exc)) from None
        # Always a concrete seed, so a stored turn can be re-run exactly (replay --verify).
        seed = next(s for s in (args.seed, preset.seed, random.randrange(2**31))
                    if s is not None)
        recorder = open_recorder(args, loaded.name, preset, seed)
        if recorder is not None:
            command = recorder.start(prompt)
            reply = recorder.reply
        else:
            command = Generate(new_request_id(), "cli", prompt, preset, args.max_new_tokens,
                               seed)
            reply = Reply(command.request_id)
        printer = StdoutPrinter(args.json)

        def on_event(event) -> None:
            if recorder is not None:
                recorder.on_event(event)
            else:
                reply.apply(event)
            if isinstance(event, Started):
                for note in window_notices(event, catalog.resolve(loaded.name).name):
                    print(f"gptterm: {note}", file=sys.stderr)
            broken = printer.broken
            printer(event)
            if printer.broken is not None and broken is None:  # stop writing: like Ctrl+C
                client.engine.submit(Cancel(command.request_id))

        end = client.generate(command, on_event)
    if recorder is not None:
        recorder.store.close()
    if printer.broken is not None:  # the reply was cancelled and saved; now say why
        raise printer.broken
    if isinstance(end, Failed):
        if not args.json:
            print(f"gptterm: generation failed: {end.error}", file=sys.stderr)
        return 1
    if args.stats:
        rate = reply.tokens_per_second or 0.0
        reused = reply.started.reused_tokens if reply.started else 0
        print(f"tokens={end.n_tokens} ttft_ms={end.ttft * 1000:.1f} tok_per_s={rate:.1f} "
              f"reused={reused}", file=sys.stderr)
    return 0


def open_recorder(args: argparse.Namespace, model: str, preset, seed: int):
    """The turn recorder for `--session REF` (the session is created if missing), or None."""
    ref = getattr(args, "session", None)
    if not ref:
        return None
    from gptterm.commands.sessions import open_store
    from gptterm.recorder import TurnRecorder, open_session
    from gptterm.store import StoreError

    store = open_store()
    try:
        session_id = open_session(store, ref)
    except StoreError as exc:
        store.close()
        raise UsageError(str(exc)) from None
    return TurnRecorder(store, session_id, model, preset, seed=seed,
                        max_new_tokens=args.max_new_tokens)
