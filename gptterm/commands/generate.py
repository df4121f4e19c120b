"""`gptterm generate PROMPT`: stream a continuation to stdout (or JSON events)."""

from __future__ import annotations

import argparse
import json
import random
import sys

from gptterm.cli import UsageError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("generate", help="stream a continuation of PROMPT to stdout")
    p.add_argument("prompt", metavar="PROMPT", help="the text to continue; - reads stdin")
    p.add_argument("--model", help="catalog name, hub id or checkpoint directory")
    p.add_argument("--preset", help="sampler preset name (see `gptterm presets`)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override one preset field, e.g. --set temperature=0.7 (repeatable)")
    p.add_argument("--max-new-tokens", type=int, help="tokens to generate at most")
    p.add_argument("--seed", type=int, help="random seed (sampling presets)")
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
                "reused_tokens": event.reused_tokens}
    if isinstance(event, p.TextDelta):
        data = {"event": "text", "text": event.text, "token_ids": list(event.token_ids)}
        if event.replace:
            data["replace"] = True
        return data
    if isinstance(event, p.Done):
        return {"event": "done", "reason": event.reason, "n_tokens": event.n_tokens,
                "seconds": round(event.seconds, 4), "ttft": round(event.ttft, 4)}
    if isinstance(event, p.Failed):
        return {"event": "failed", "error": event.error}
    return None


class StdoutPrinter:
    """Writes text deltas as they come; a beam search's replacements print once, at the end."""

    def __init__(self, as_json: bool):
        self.as_json = as_json
        self.replaced: str | None = None
        self.started = None
        self.wrote_text = False

    def __call__(self, event) -> None:
        from gptterm import protocol as p

        if isinstance(event, p.Started):
            self.started = event
        if self.as_json:
            line = event_json(event)
            if line is not None:
                print(json.dumps(line, ensure_ascii=False), flush=True)
            return
        if isinstance(event, p.TextDelta):
            if event.replace:
                self.replaced = event.text
            else:
                sys.stdout.write(event.text)
                sys.stdout.flush()
                self.wrote_text = True
        elif isinstance(event, (p.Done, p.Failed)):
            if self.replaced is not None:
                sys.stdout.write(self.replaced)
                self.wrote_text = True
            if self.wrote_text:
                sys.stdout.write("\n")
            sys.stdout.flush()


def read_prompt(prompt: str) -> str:
    if prompt != "-":
        return prompt
    return sys.stdin.read()


def run(args: argparse.Namespace) -> int:
    from gptterm import catalog
    from gptterm.engine.client import EngineClient, ModelLoadError, new_request_id
    from gptterm.protocol import Failed, Generate

    preset = resolve_preset(args.preset, args.overrides)
    if args.max_new_tokens is not None and args.max_new_tokens < 1:
        raise UsageError(f"--max-new-tokens {args.max_new_tokens}: expected an integer >= 1")
    prompt = read_prompt(args.prompt)
    hook = session_hook(args, prompt)
    with EngineClient(device=args.device) as client:
        try:
            loaded = client.load(args.model or catalog.DEFAULT_MODEL, args.device)
        except ModelLoadError as exc:
            raise UsageError(str(exc)) from None
        # Always a concrete seed, so a stored turn can be re-run exactly (replay --verify).
        seed = next(s for s in (args.seed, preset.seed, random.randrange(2**31))
                    if s is not None)
        command = Generate(new_request_id(), hook.session_id if hook else "cli",
                           hook.context if hook else prompt, preset,
                           args.max_new_tokens, seed)
        printer = StdoutPrinter(args.json)

        def on_event(event) -> None:
            if hook:
                hook.on_event(event, loaded.name, command)
            printer(event)

        end = client.generate(command, on_event)
    if isinstance(end, Failed):
        if not args.json:
            print(f"gptterm: generation failed: {end.error}", file=sys.stderr)
        return 1
    if args.stats:
        tok_per_s = end.n_tokens / max(end.seconds - end.ttft, 1e-9) if end.n_tokens > 1 else 0.0
        reused = printer.started.reused_tokens if printer.started else 0
        print(f"tokens={end.n_tokens} ttft_ms={end.ttft * 1000:.1f} tok_per_s={tok_per_s:.1f} "
              f"reused={reused}", file=sys.stderr)
    return 0


def session_hook(args: argparse.Namespace, prompt: str):
    """The stored-session recorder for `--session`, or None (set up by the store module)."""
    from gptterm.session_run import open_recorder

    return open_recorder(args, prompt)
