"""RemoteEngine: the Engine API (start, submit, close; events through `emit`) over a server.

One worker thread, like the local engine: it answers LoadModel by asking the server who
it is (flavour, version, window, model id), streams each Generate from the server and
turns what comes back into the same events (Started, TextDelta, Done, Failed), and answers
CountTokens with the server's tokenizer where it has one. Cancel shuts the stream's socket
from the submitting thread: the server sees the client go away and stops generating.

What the server is sent: the context as text (`Generate.text()`, every segment joined), for
every flavour. Stored token ids are not sent back: a stream's ids are incomplete where
a character spans tokens (llama.cpp sends no event for a partial character), so the text
is the one faithful record, and the server's prompt cache (`cache_prompt`) reuses the
prefix it already holds. The ids a server reports (llama.cpp, TGI) are passed on in
TextDelta for counting and the store; the other flavours report none. One exception:
a context longer than the server's window is cut by the local engine's window rule
(`engine.window`: the start moves as rarely as it can, a pinned memory stays), which
needs token positions, so a flavour that tokenizes and takes ids as a prompt (llama.cpp,
vLLM, SGLang) is then sent the ids of the window, from its own /tokenize.

Preset fields go through `flavors.translate` before anything is sent: a field the flavour
cannot honour fails the request in one line, or (lenient) is dropped and named in
`Started.dropped`. Stop strings are also cut here, whatever the server does with them, so
a reply never shows one.
"""

from __future__ import annotations

import dataclasses
import json
import math
import queue
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from gptterm.engine.window import cap_max_new, place_pinned, window_ids
from gptterm.errors import first_line
from gptterm.protocol import (
    Backend, Cancel, Command, CountTokens, Done, DropSession, Event, Failed, Generate, LoadModel,
    ModelFailed, ModelLoaded, ModelLoading, Shutdown, Started, TextDelta, TokenCount,
    context_text,
)
from gptterm.remote import flavors
from gptterm.remote.detect import AUTO, ServerInfo, detect_flavor, server_info
from gptterm.remote.httpclient import RemoteError, Server, Stream
from gptterm.remote.sse import DONE, LineParser, SSEParser

NO_MODEL = "no model is loaded yet"
ID_PROMPTS = ("llama.cpp", "vllm", "sglang")  # tokenize, and take a prompt as token ids


@dataclass
class Piece:
    """What one stream event adds (None: the event does not say)."""

    text: str = ""
    token_ids: tuple[int, ...] = ()
    alternatives: tuple[tuple[tuple[str, float], ...], ...] = ()
    finish: str | None = None  # eos | length | stop
    prompt_tokens: int | None = None
    reused_tokens: int | None = None
    n_tokens: int | None = None
    error: str | None = None


# ---------------------------------------------------------------- requests per flavour


def request_for(flavor: str, text: str | list[int], fields: dict[str, Any],
                model: str | None, top_k: int, sampling: bool) -> tuple[str, dict[str, Any]]:
    """(path, JSON body) of a streaming generation request (`text` may be token ids for
    the ID_PROMPTS flavours); `top_k` > 0 asks for that many probabilities per token where
    the flavour gives them."""
    if flavor == "llama.cpp":
        body = {"prompt": text, "stream": True, "cache_prompt": True,
                "timings_per_token": True, **fields}
        if model:
            body["model"] = model
        body["n_probs"] = top_k
        # The sampler's final distribution when sampling; greedy's final one is a single
        # token (top_k = 1), so it shows the model's own.
        body["post_sampling_probs"] = bool(top_k and sampling)
        return "/completion", body
    if flavor in flavors.OPENAI_LIKE:
        body = {"model": model, "prompt": text, "stream": True,
                "stream_options": {"include_usage": True}, "n": 1, **fields}
        if top_k and flavor in flavors.PROBABILITIES:
            body["logprobs"] = top_k
        return "/v1/completions", body
    if flavor == "tgi":
        params = {**fields, "details": True, "return_full_text": False}
        return "/generate_stream", {"inputs": text, "parameters": params}
    # Ollama: raw, so no prompt template is wrapped round the text.
    return "/api/generate", {"model": model, "prompt": text, "raw": True, "stream": True,
                             "options": fields}


def distribution_for(flavor: str, sampling: bool) -> str:
    """Which probabilities `request_for` asked for (see TextDelta.distribution)."""
    return "final" if flavor == "llama.cpp" and sampling else "raw"


# ---------------------------------------------------------------- stream events per flavour

_LLAMA_STOP = {"eos": "eos", "limit": "length", "word": "stop"}
_TGI_STOP = {"eos_token": "eos", "length": "length", "stop_sequence": "stop"}


def parse_event(flavor: str, data: Any) -> Piece:
    """One decoded event of `flavor`'s stream as a Piece."""
    if not isinstance(data, dict):
        return Piece(error="the server sent something that is not a JSON object")
    if "error" in data:
        error = data["error"]
        if isinstance(error, dict):
            error = error.get("message", error)
        return Piece(error=" ".join(str(error).split()) or "the server reported an error")
    if flavor == "llama.cpp":
        return _llama_piece(data)
    if flavor in flavors.OPENAI_LIKE:
        return _openai_piece(data)
    if flavor == "tgi":
        return _tgi_piece(data)
    return _ollama_piece(data)


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 \
        else None


def _ids(value: Any) -> tuple[int, ...]:
    if isinstance(value, list) and all(_int(v) is not None for v in value):
        return tuple(value)
    return ()


def _llama_piece(data: dict) -> Piece:
    piece = Piece(text=str(data.get("content") or ""), token_ids=_ids(data.get("tokens")),
                  prompt_tokens=_int(data.get("tokens_evaluated")))
    timings = data.get("timings")
    if isinstance(timings, dict):
        piece.reused_tokens = _int(timings.get("cache_n"))
    alternatives = []
    for entry in data.get("completion_probabilities") or ():
        if not isinstance(entry, dict):
            continue
        top = entry.get("top_probs")
        key, log = ("prob", False) if top is not None else ("logprob", True)
        top = top if top is not None else entry.get("top_logprobs") or ()
        alternatives.append(tuple(
            (str(t.get("token", "")), _prob(t.get(key), log)) for t in top if isinstance(t, dict)))
    piece.alternatives = tuple(alternatives)
    if data.get("stop") is True:
        piece.finish = _LLAMA_STOP.get(str(data.get("stop_type")), "eos")
        piece.n_tokens = _int(data.get("tokens_predicted"))
    return piece


def _prob(value: Any, log: bool) -> float:
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return 0.0
    return math.exp(value) if log else float(value)


def _openai_piece(data: dict) -> Piece:
    piece = Piece()
    choices = data.get("choices") or []
    choice = choices[0] if choices and isinstance(choices[0], dict) else {}
    piece.text = str(choice.get("text") or "")
    logprobs = choice.get("logprobs")
    if isinstance(logprobs, dict):
        piece.alternatives = tuple(
            tuple(sorted(((str(t), _prob(lp, True)) for t, lp in (top or {}).items()),
                         key=lambda pair: -pair[1]))
            for top in logprobs.get("top_logprobs") or () if isinstance(top or {}, dict))
    token_ids = _ids(choice.get("token_ids"))  # vLLM with return_token_ids
    piece.token_ids = token_ids
    reason = choice.get("finish_reason")
    if reason == "length":
        piece.finish = "length"
    elif reason is not None:
        # "stop" is both the end token and a stop string; vLLM names the string it met.
        piece.finish = "stop" if isinstance(choice.get("stop_reason"), str) else "eos"
    usage = data.get("usage")
    if isinstance(usage, dict):
        piece.prompt_tokens = _int(usage.get("prompt_tokens"))
        piece.n_tokens = _int(usage.get("completion_tokens"))
        details = usage.get("prompt_tokens_details")
        if isinstance(details, dict):
            piece.reused_tokens = _int(details.get("cached_tokens"))
    return piece


def _tgi_piece(data: dict) -> Piece:
    piece = Piece()
    token = data.get("token")
    if isinstance(token, dict) and not token.get("special"):
        piece.text = str(token.get("text") or "")
        piece.token_ids = _ids([token.get("id")])
    details = data.get("details")
    if isinstance(details, dict):
        piece.finish = _TGI_STOP.get(str(details.get("finish_reason")), "eos")
        piece.n_tokens = _int(details.get("generated_tokens"))
    return piece


def _ollama_piece(data: dict) -> Piece:
    piece = Piece(text=str(data.get("response") or ""))
    if data.get("done") is True:
        piece.finish = "length" if data.get("done_reason") == "length" else "eos"
        piece.n_tokens = _int(data.get("eval_count"))
    return piece


class StopCutter:
    """Holds back text that may begin a stop string; ends the reply before one."""

    def __init__(self, stops: tuple[str, ...]):
        self.stops = stops
        self.held = ""
        self.hit = False

    def feed(self, text: str) -> str:
        """The text that can be shown now; sets `hit` when a stop string appeared."""
        if not self.stops:
            return text
        self.held += text
        cut = min((i for i in (self.held.find(s) for s in self.stops) if i >= 0), default=-1)
        if cut >= 0:
            self.hit = True
            shown, self.held = self.held[:cut], ""
            return shown
        keep = max((n for s in self.stops for n in range(1, len(s))
                    if self.held.endswith(s[:n])), default=0)
        shown = self.held[: len(self.held) - keep]
        self.held = self.held[len(shown):]
        return shown

    def flush(self) -> str:
        held, self.held = self.held, ""
        return held


# ---------------------------------------------------------------- the engine


class RemoteEngine:
    """The Engine API over one server; see the module docstring.

    Args:
        emit: called with each Event, on the worker thread.
        url: the server's base URL (credentials in it are sent, never shown).
        flavor: auto | llama.cpp | vllm | sglang | tgi | ollama | openai.
        model: the server's model id, where it serves several.
        api_key: a bearer token.
        lenient: drop preset fields the flavour cannot honour instead of refusing.
    """

    def __init__(self, emit: Callable[[Event], None], url: str, flavor: str = AUTO,
                 model: str | None = None, api_key: str | None = None, lenient: bool = False):
        self._emit = emit
        self._url = url
        self._api_key = api_key
        self._flavor = flavor
        self._model = model
        self.lenient = lenient
        self._inbox: queue.Queue[Command] = queue.Queue()
        self._lock = threading.Lock()
        self._active: str | None = None
        self._stream: Stream | None = None
        self._cancelled: set[str] = set()
        self._count: CountTokens | None = None
        self._thread = threading.Thread(target=self._run, name="gptterm-remote", daemon=True)
        self._server: Server | None = None
        self.info: ServerInfo | None = None
        self._name = ""
        self._context_count: tuple[str, int] | None = None  # (text, tokens): the last one
        self._starts: dict[str, int] = {}  # session id -> its window start (engine.window)

    # ------------------------------------------------------------ any thread

    def start(self) -> RemoteEngine:
        self._thread.start()
        return self

    def submit(self, command: Command) -> None:
        """Queue a command; Cancel acts at once (it shuts the stream)."""
        with self._lock:
            if isinstance(command, CountTokens):
                self._count = command
            if isinstance(command, Cancel):
                if command.request_id == self._active:
                    self._cancelled.add(command.request_id)
                    if self._stream is not None:
                        self._stream.abort()
                else:
                    self._cancelled.add(command.request_id)
                return
            if isinstance(command, (LoadModel, Shutdown)) and self._active is not None:
                self._cancelled.add(self._active)  # a new model or shutdown stops it first
                if self._stream is not None:
                    self._stream.abort()
        self._inbox.put(command)

    def close(self, timeout: float = 5.0) -> None:
        if self._thread.is_alive():
            self.submit(Shutdown())
            self._thread.join(timeout)

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    @property
    def backend(self) -> Backend | None:
        if self.info is None or self._server is None:
            return None
        return Backend(self.info.flavor, self.info.version, self._server.url, self.info.served)

    # ------------------------------------------------------------ worker thread

    def _run(self) -> None:
        while True:
            command = self._inbox.get()
            if isinstance(command, Shutdown):
                return
            try:
                if isinstance(command, LoadModel):
                    self._load(command)
                elif isinstance(command, Generate):
                    self._generate(command)
                elif isinstance(command, CountTokens):
                    self._answer_count()
                elif isinstance(command, DropSession):
                    self._starts.pop(command.session_id, None)  # the server keeps its caches
            except Exception as exc:  # the worker must survive anything one command does
                line = first_line(exc)
                if isinstance(command, Generate):
                    self._emit(Failed(command.request_id, line))
                elif isinstance(command, LoadModel):
                    self._emit(ModelFailed(command.name, line))

    def _load(self, command: LoadModel) -> None:
        self._emit(ModelLoading(command.name, 0.0, "asking the server"))
        try:
            server = Server(self._url, self._api_key)
            flavor = detect_flavor(server) if self._flavor == AUTO else self._flavor
            info = server_info(server, flavor, self._model)
        except RemoteError as exc:
            self._emit(ModelFailed(command.name, str(exc)))
            return
        self._server, self.info, self._name = server, info, command.name
        self._context_count = None
        self._emit(ModelLoaded(command.name, info.flavor, info.n_ctx, self.backend))

    def check(self, command: Generate) -> tuple[dict[str, Any], list[str]]:
        """The request fields for `command` (see flavors.translate; raises its error)."""
        assert self.info is not None
        preset = command.preset
        max_new = self._max_new(command)
        seed = command.seed if command.seed is not None else preset.seed
        if seed is None:
            seed = random.randrange(2**31)
        preset = dataclasses.replace(preset, max_new_tokens=max_new, seed=seed)
        return flavors.translate(preset, self.info.flavor, lenient=self.lenient,
                                 n_ctx=self.info.n_ctx)

    def _max_new(self, command: Generate) -> int:
        """max_new_tokens after the window cap (half the server's window, when known)."""
        requested = command.max_new_tokens or command.preset.max_new_tokens
        return cap_max_new(requested, self.info.n_ctx) if self.info and self.info.n_ctx \
            else requested

    def _prompt(self, command: Generate, max_new: int) -> tuple[str | list[int], int, int]:
        """(what is sent as the prompt, window start, tokens dropped now): the text when
        it fits the server's window, else the window's token ids (see the module
        docstring). A server does not slide while it writes: the whole reply needs room."""
        assert self.info is not None
        text = command.text()
        n_ctx = self.info.n_ctx
        # Byte-level tokenizers never make more tokens than bytes (+1: a start token).
        if not n_ctx or self.info.flavor not in ID_PROMPTS \
                or len(text.encode("utf-8")) + 1 + max_new <= n_ctx:
            return text, 0, 0
        segments = command.segments()
        n_pinned = command.pinned_segments
        pinned = self._token_ids(context_text(segments[:n_pinned])) if n_pinned else []
        ids = pinned + self._token_ids(context_text(segments[n_pinned:]))
        before = command.window_start if command.window_start is not None \
            else self._starts.get(command.session_id, 0)
        start = place_pinned(len(ids), len(pinned), before, n_ctx, max_new)
        self._starts[command.session_id] = start
        window = window_ids(ids, len(pinned), start, n_ctx, max_new)
        if len(window) == len(ids):
            return text, 0, 0
        return window, len(ids) - len(window), max(0, start - before)

    def _generate(self, command: Generate) -> None:
        rid = command.request_id
        with self._lock:
            if rid in self._cancelled:
                self._cancelled.discard(rid)
                self._emit(Done(rid, "cancelled", 0, 0.0, 0.0))
                return
            self._active = rid
        try:
            if self.info is None or self._server is None:
                self._emit(Failed(rid, NO_MODEL))
                return
            try:
                fields, dropped = self.check(command)
            except flavors.UnsupportedField as exc:
                self._emit(Failed(rid, str(exc)))
                return
            self._stream_reply(command, fields, tuple(dropped))
        finally:
            with self._lock:
                self._active = None
                self._stream = None
                self._cancelled.discard(rid)

    def _stream_reply(self, command: Generate, fields: dict[str, Any],
                      dropped: tuple[str, ...]) -> None:
        assert self.info is not None and self._server is not None
        rid = command.request_id
        flavor = self.info.flavor
        sampling = command.preset.method == "sample"
        requested = command.max_new_tokens or command.preset.max_new_tokens
        max_new = self._max_new(command)
        try:
            prompt, window_start, moved = self._prompt(command, max_new)
        except RemoteError as exc:
            self._emit(Failed(rid, str(exc)))
            return
        path, body = request_for(flavor, prompt, fields, self.info.model,
                                 command.inspect_top_k, sampling)
        distribution = distribution_for(flavor, sampling)
        began = time.monotonic()
        try:
            stream = self._server.stream(path, body)
        except RemoteError as exc:
            self._emit(Failed(rid, str(exc)))
            return
        with self._lock:
            self._stream = stream
            if rid in self._cancelled:
                stream.abort()
        cutter = StopCutter(command.preset.stop)
        started: Started | None = None
        first_at: float | None = None
        n_tokens = 0
        final = Piece()
        parser: Any = LineParser() if flavor == "ollama" else SSEParser()
        try:
            for raw in _events(stream, parser):
                if raw is None:  # [DONE]
                    break
                piece = parse_event(flavor, raw)
                if piece.error is not None:
                    self._emit(Failed(rid, f"the server: {piece.error}"))
                    return
                if started is None:
                    started = Started(rid, piece.prompt_tokens or 0, piece.reused_tokens,
                                      window_start=window_start, dropped_tokens=moved,
                                      max_new_tokens=max_new,
                                      requested_max_new_tokens=requested,
                                      n_ctx=self.info.n_ctx, backend=self.backend,
                                      dropped=dropped)
                    self._emit(started)
                for name in ("prompt_tokens", "reused_tokens", "n_tokens", "finish"):
                    if getattr(piece, name) is not None:
                        setattr(final, name, getattr(piece, name))
                shown = cutter.feed(piece.text)
                if shown or piece.token_ids or piece.alternatives:
                    if first_at is None and (shown or piece.token_ids):
                        first_at = time.monotonic()
                    n_tokens += len(piece.token_ids) or (1 if piece.text else 0)
                    self._emit(TextDelta(rid, shown, piece.token_ids, piece.alternatives,
                                         distribution=distribution))
                if self._count is not None:
                    self._answer_count()  # between two events, as the local engine does
                if cutter.hit:
                    final.finish = "stop"
                    break  # closing the stream stops the server
        except RemoteError as exc:
            if rid not in self._cancelled:
                self._emit(Failed(rid, str(exc)))
                return
        finally:
            stream.abort()
            stream.close()
        cancelled = rid in self._cancelled
        rest = cutter.flush()
        if rest and not cancelled:
            self._emit(TextDelta(rid, rest, distribution=distribution))
        if not cancelled and final.finish is None:
            self._emit(Failed(rid, "the server closed the stream before the reply ended"))
            return
        end = time.monotonic()
        count = final.n_tokens if final.n_tokens is not None and not cancelled else n_tokens
        prompt = final.prompt_tokens
        self._emit(Done(rid, "cancelled" if cancelled else final.finish or "eos", count,
                        end - began, (first_at or end) - began,
                        context_tokens=(prompt or 0) + count if prompt is not None else 0,
                        window_start=window_start, max_new_tokens=max_new, prompt_tokens=prompt,
                        reused_tokens=final.reused_tokens))

    # ------------------------------------------------------------ counting

    def _answer_count(self) -> None:
        with self._lock:
            command, self._count = self._count, None
        if command is None:
            return
        if self.info is None or self._server is None:
            self._emit(Failed(command.request_id, NO_MODEL))
            return
        try:
            context = "".join(segment.text for segment in command.context)
            n_text = self._tokens(command.text)
            if self._context_count is None or self._context_count[0] != context:
                self._context_count = (context, self._tokens(context))
            n_context = self._context_count[1]
        except RemoteError as exc:
            self._emit(Failed(command.request_id, str(exc)))
            return
        self._emit(TokenCount(command.request_id, n_text, n_context, self.info.n_ctx,
                              self._name))

    def _token_ids(self, text: str) -> list[int]:
        """The server's token ids for `text` (ID_PROMPTS flavours: their /tokenize)."""
        assert self.info is not None and self._server is not None
        if not text:
            return []
        if self.info.flavor == "llama.cpp":
            body: dict[str, Any] = {"content": text, "add_special": False}
        else:
            body = {"model": self.info.model, "prompt": text, "add_special_tokens": False}
        data = self._server.request_json("POST", "/tokenize", body)
        ids = list(_ids(data.get("tokens"))) if isinstance(data, dict) else []
        if not ids:
            raise RemoteError(f"{self._server.url}/tokenize: no token ids in the answer")
        return ids

    def _tokens(self, text: str) -> int:
        """The server's token count for `text` (its /tokenize)."""
        assert self.info is not None and self._server is not None
        if not text:
            return 0
        flavor = self.info.flavor
        if flavor in ID_PROMPTS:
            return len(self._token_ids(text))
        if flavor == "tgi":
            data = self._server.request_json("POST", "/tokenize", {"inputs": text})
            return len(data) if isinstance(data, list) else 0
        raise RemoteError(f"{flavor} servers do not count tokens")


def _events(stream: Stream, parser: Any):
    """Decoded JSON events from `stream` (None for OpenAI's `[DONE]`), as they arrive."""
    while True:
        chunk = stream.read()
        items = parser.feed(chunk) if chunk else parser.close()
        for item in items:
            if isinstance(item, str):  # an NDJSON line
                yield _json(item)
            elif item.event == "error":
                yield {"error": _json_or_text(item.data)}
            elif item.data.strip() == DONE:
                yield None
            else:
                yield _json(item.data)
        if not chunk:
            return


def _json(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return {"error": f"the server sent an event that is not JSON: {text[:60]!r}"}


def _json_or_text(text: str) -> Any:
    try:
        data = json.loads(text)
    except ValueError:
        return text
    if isinstance(data, dict) and "error" in data:
        return data["error"]
    return data
