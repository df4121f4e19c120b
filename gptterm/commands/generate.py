"""`gptterm generate PROMPT`: stream a continuation to stdout (or JSON events).

With `--session`, the run continues the session as it was left: its model, preset and
sampling overrides, unless a flag here says otherwise (see DESCRIPTION).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import random
import signal
import sys
import threading

from gptterm.cli import UsageError
from gptterm.cli_types import int_range, positive_int, read_text, seed_arg
from gptterm.commands.sessions import guarded
from gptterm.config import PRECISION_CHOICES, THREADS_MAX

DESCRIPTION = """\
Continue PROMPT with a language model and stream the continuation to stdout.

PROMPT is the text to continue; - reads it from stdin. Ctrl+C stops the output at
once and ends the generation.

With --session NAME|ID, the prompt and the reply are added to that stored session
(created if missing), and the model sees the session's text before PROMPT. A session
remembers the model, preset and sampling settings it last ran with: without --model
or --preset, generate continues on the session's model and preset, with its sampling
settings; --model, --preset, --set, --seed and --max-new-tokens given here win. A new
session, or a run without one, uses the default model.

With --session NAME|ID --regenerate (and no PROMPT), the session's last reply is written
again after the same text and kept as an alternative of it (`sessions show` marks it
`reply 2/2`); the new one is chosen, so the session continues from it."""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("generate", help="stream a continuation of PROMPT to stdout",
                       description=DESCRIPTION,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("prompt", metavar="PROMPT", nargs="?",
                   help="the text to continue; - reads stdin")
    p.add_argument("--model", help="catalog name, hub id, model folder, or a server: "
                                   "http(s)://HOST:PORT or remote:NAME (default: the "
                                   "session's model, else the default model)")
    p.add_argument("--preset", help="sampler preset name, see `gptterm presets` (default: "
                                    "the session's preset, else the default preset)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override one preset field, e.g. --set temperature=0.7 (repeatable)")
    p.add_argument("--max-new-tokens", type=positive_int,
                   help="tokens to generate at most (at most half the model's window)")
    p.add_argument("--seed", type=seed_arg, help="random seed (sampling presets)")
    p.add_argument("--threads", type=int_range(1, THREADS_MAX),
                   help="CPU threads for the model (default: picked for the model's size)")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--precision", choices=PRECISION_CHOICES,
                   help="weights' precision: fp32 is exact; auto measures once per model and "
                        "takes the fastest within 2%% of fp32's perplexity (default: the "
                        "config's, else fp32 on a CPU, fp16 on a GPU)")
    p.add_argument("--json", action="store_true", help="one JSON object per event per line")
    p.add_argument("--session", metavar="NAME|ID",
                   help="append the prompt and reply to this stored session (created if "
                        "missing) and continue from its text")
    p.add_argument("--regenerate", action="store_true",
                   help="with --session and no PROMPT: write the session's last reply again, "
                        "kept as an alternative of it")
    p.add_argument("--stats", action="store_true",
                   help="print tokens, ttft_ms, tok_per_s, reused on stderr at the end")
    p.add_argument("--lenient", action="store_true",
                   help="with a model on a server (--model URL or remote:NAME): drop the "
                        "preset fields it cannot honour, with a warning, instead of refusing")
    p.set_defaults(func=run)


def resolve_preset(name: str | None, overrides: list[str], session=None):
    """The preset of this run: `name` (--preset), else the session's, else the default;
    with the session's sampling overrides, then the `--set` ones (the flags win)."""
    from gptterm import presets
    from gptterm.recorder import session_preset, with_sampling
    from gptterm.textsafe import inert

    loaded, failed = presets.load_presets()
    if session is None or name is not None or session.preset is None:
        base = named_preset(name or presets.DEFAULT_PRESET, loaded, failed)
        if session is not None:  # the session's sampling still applies
            base = with_sampling(base, session.sampling)
    else:
        if session.preset not in loaded:
            print(f"gptterm: the session's preset {inert(session.preset, single_line=True)!r}"
                  f" is not available: using {presets.DEFAULT_PRESET!r}", file=sys.stderr)
            named_preset(presets.DEFAULT_PRESET, loaded, failed)  # a broken default says so
        base = session_preset(loaded, session, presets.DEFAULT_PRESET)
    try:
        return presets.apply_assignments(base, overrides)
    except presets.PresetError as exc:
        raise UsageError(str(exc)) from None


def named_preset(name: str, loaded: dict, failed: list[str]):
    """The loaded preset `name`; one line when it is broken or unknown (the default preset,
    when its file is missing, has neutral values)."""
    from gptterm import presets

    base = loaded.get(name)
    if base is None:
        broken = [line for line in failed if f"{name}.toml" in line]
        if broken:
            raise UsageError(broken[0])
        if name != presets.DEFAULT_PRESET:
            known = ", ".join(sorted(loaded)) or "none"
            raise UsageError(f"--preset {name!r}: no such preset (known: {known})")
        base = presets.Preset(name=name)  # the default file is missing: neutral values
    return base


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
        if event.beams:  # beam search: every hypothesis, best first
            data["beams"] = [{"text": b.text, "token_ids": list(b.token_ids), "score": b.score,
                              "finished": b.finished} for b in event.beams]
        return data
    if isinstance(event, p.Done):
        return {"event": "done", "reason": event.reason, "n_tokens": event.n_tokens,
                "seconds": round(event.seconds, 4), "ttft": round(event.ttft, 4),
                "max_new_tokens": event.max_new_tokens, "prompt_tokens": event.prompt_tokens,
                "reused_tokens": event.reused_tokens}
    if isinstance(event, p.Failed):
        return {"event": "failed", "error": event.error}
    return None


class StdoutPrinter:
    """Writes text deltas as they come; a beam search's replacements print once, at the end.

    Model output is made inert (control characters shown, not sent) when stdout is a
    terminal. A write that fails (a closed pipe, a full disk) is kept in `broken`; the
    caller then cancels the generation. After `stop` (Ctrl+C) no more text is written:
    only the end (a newline, or the JSON end event).
    """

    def __init__(self, as_json: bool, stream=None):
        self.as_json = as_json
        self.out = stream or sys.stdout
        self.inert = not as_json and self.out.isatty()
        self.replaced: str | None = None
        self.wrote_text = False
        self.broken: OSError | None = None
        self.stopped = False

    def stop(self) -> None:
        """Write no more text (safe from a signal handler: it only sets a flag)."""
        self.stopped = True

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
            if line is not None and not (self.stopped and isinstance(event, p.TextDelta)):
                self.out.write(json.dumps(line, ensure_ascii=False) + "\n")
                self.out.flush()
            return
        if isinstance(event, p.TextDelta):
            if event.replace:
                self.replaced = event.text
            elif not self.stopped:
                self._write(event.text)
                self.out.flush()
                self.wrote_text = True
        elif isinstance(event, (p.Done, p.Failed)):
            if self.replaced is not None and not self.stopped:
                self._write(self.replaced)
                self.wrote_text = True
            if self.wrote_text:
                self.out.write("\n")
            self.out.flush()


@contextlib.contextmanager
def stop_output_on_sigint(printer: StdoutPrinter):
    """While the body runs, Ctrl+C stops `printer` at once, then interrupts as usual (the
    engine client cancels the generation on KeyboardInterrupt).

    Without this, text the engine had already produced, or produced before it saw the
    Cancel, was still printed after ^C.
    """
    if (threading.current_thread() is not threading.main_thread()
            or signal.getsignal(signal.SIGINT) is signal.SIG_IGN):
        yield
        return

    def handler(signum, frame):
        printer.stop()
        signal.default_int_handler(signum, frame)  # raises KeyboardInterrupt

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


@guarded
def run(args: argparse.Namespace) -> int:
    """Stream one reply; a store or stdout failure ends it with one line (`guarded`)."""
    prompt = None
    if getattr(args, "regenerate", False):
        if args.prompt is not None or not args.session:
            raise UsageError("--regenerate: expected --session NAME|ID and no PROMPT "
                             "(it writes the session's last reply again)")
    elif args.prompt is None:
        raise UsageError("PROMPT: expected the text to continue (- reads stdin)")
    else:
        try:
            prompt = read_text(args.prompt)
        except ValueError as exc:
            raise UsageError(str(exc)) from None
    store, session = open_stored_session(args)
    try:
        again = reply_to_regenerate(store, session, args.session) if prompt is None else None
        return _generate(args, prompt, store, session, again)
    finally:
        if store is not None:
            store.close()


def reply_to_regenerate(store, session, ref: str) -> int:
    """The id of the session's last reply, which --regenerate writes again."""
    from gptterm.commands.sessions import label

    if session is None:
        raise UsageError(f"--session {label(ref)}: no such session: nothing to regenerate")
    turns = store.context_turns(session.id)
    if not turns or turns[-1].role != "model":
        raise UsageError(f"session {label(session.label)} does not end with a reply: nothing "
                         "to regenerate (generate --session with a PROMPT continues it)")
    return turns[-1].id


def _generate(args: argparse.Namespace, prompt: str | None, store, session,
              alternative_of: int | None = None) -> int:
    from gptterm import catalog
    from gptterm.engine.client import EngineClient, ModelLoadError
    from gptterm.engine.threads import requested_threads
    from gptterm.protocol import Cancel, Failed, Generate, Reply, Started, new_request_id
    from gptterm.recorder import TurnRecorder, open_session, window_notices
    from gptterm.remote.flavors import UnsupportedField

    preset = resolve_preset(args.preset, args.overrides, session)
    remembered = session.model if session is not None else None
    model = load_name(args.model or remembered or catalog.DEFAULT_MODEL)
    threads = requested_threads(args.threads)
    with EngineClient(device=args.device, threads=threads,
                      lenient=getattr(args, "lenient", False),
                      precision=getattr(args, "precision", None)) as client:
        try:
            loaded = client.load(model, args.device)
        except ModelLoadError as exc:
            if args.model or not remembered:
                raise UsageError(str(exc)) from None
            raise UsageError(f"{exc} (the session's model; choose another with --model)"
                             ) from None
        if is_model_folder(model):
            from gptterm.local_models import remember_or_say

            remember_or_say(model, how="loaded")
        # Always a concrete seed, so a stored turn can be re-run exactly (replay --verify).
        seed = next(s for s in (args.seed, preset.seed, random.randrange(2**31))
                    if s is not None)
        try:  # a server that cannot honour the preset refuses before anything is stored
            client.check(Generate("check", "cli", prompt or "", preset, args.max_new_tokens,
                                  seed))
        except UnsupportedField as exc:
            raise UsageError(str(exc)) from None
        recorder = None
        if store is not None:
            session_id = session.id if session is not None else open_session(store, args.session)
            recorder = TurnRecorder(store, session_id, loaded.name, preset, seed=seed,
                                    max_new_tokens=args.max_new_tokens)
            command = recorder.start(prompt, alternative_of=alternative_of)
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
                pinned = recorder is not None and bool(recorder.memory)
                for note in window_notices(event, model_label(loaded.name), pinned):
                    print(f"gptterm: {note}", file=sys.stderr)
            broken = printer.broken
            printer(event)
            if printer.broken is not None and broken is None:  # stop writing: like Ctrl+C
                client.engine.submit(Cancel(command.request_id))

        with stop_output_on_sigint(printer):
            end = client.generate(command, on_event)
    if printer.broken is not None:  # the reply was cancelled and saved; now say why
        raise printer.broken
    if isinstance(end, Failed):
        if not args.json:
            print(f"gptterm: generation failed: {end.error}", file=sys.stderr)
        return 1
    if args.stats:
        rate = reply.tokens_per_second or 0.0
        reused = reply.started.reused_tokens if reply.started else 0
        reused = "?" if reused is None else reused  # a server that does not say
        print(f"tokens={end.n_tokens} ttft_ms={end.ttft * 1000:.1f} tok_per_s={rate:.1f} "
              f"reused={reused} precision={loaded.precision or '?'}", file=sys.stderr)
    return 0


def open_stored_session(args: argparse.Namespace):
    """(store, session) for `--session REF`: the session is None while it does not exist
    yet (it is created once the model has loaded); (None, None) without `--session`."""
    ref = getattr(args, "session", None)
    if not ref:
        return None, None
    from gptterm.commands.sessions import open_store
    from gptterm.store import StoreError

    store = open_store()
    try:
        return store, store.find_session(ref)
    except StoreError:
        return store, None


def is_model_folder(name: str) -> bool:
    """Whether `name` (as `load_name` gives it) is a model folder of the user's, not one
    shipped with gptterm."""
    from gptterm import catalog
    from gptterm.remote import is_remote

    if is_remote(name):
        return False
    spec = catalog.resolve(name)
    return spec.local and spec.name not in catalog.SHIPPED


def load_name(name: str) -> str:
    """What to load for `--model NAME`: a model folder given by a path becomes its absolute
    path (so the session's memory of it works from any folder); names and servers stay as
    they are."""
    from gptterm import catalog
    from gptterm.remote import is_remote

    if is_remote(name):
        return name
    spec = catalog.resolve(name)
    return spec.source if spec.local and name not in (spec.name, spec.source) else name


def model_label(name: str) -> str:
    """A short name for a model in messages (a server's URL stays whole)."""
    from gptterm import catalog
    from gptterm.remote import is_remote

    return name if is_remote(name) else catalog.resolve(name).label
