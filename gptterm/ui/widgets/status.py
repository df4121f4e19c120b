"""The status bar: model and device, preset, speed, time to first token, cache reuse, context.

Every figure belongs to the session on screen: `figures_of` reads them from the
session's newest model turn (what its stats recorded), and the main screen replaces
them live while a reply streams into that session. A bar too narrow for all of it
drops the least important parts first (`PRIORITY`), so the model, the context fill
and the reuse stay visible at 60 columns.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from rich.cells import cell_len
from textual.content import Content
from textual.widget import Widget

SEPARATOR = " │ "


@dataclass(frozen=True)
class StatusInfo:
    """Everything the status bar shows; None means "not known yet"."""

    model: str | None = None
    device: str | None = None
    precision: str = ""  # what the model decodes at, shown after the device ("": not said)
    preset: str = ""
    loading: str | None = None  # model being loaded
    load_fraction: float = 0.0
    load_message: str = ""
    generating: bool = False
    cancelling: bool = False
    # The session's figures (FIGURES): from its newest reply, or the one streaming.
    tok_s: float | None = None
    ttft: float | None = None
    reused: int | None = None  # None: no figure; REUSED_UNKNOWN: a server that did not say
    context: int | None = None
    out_of_window: int = 0  # tokens of the oldest text the model no longer sees
    seed: int | None = None
    memory: int | None = None  # tokens of the session's pinned memory (None: none)
    n_ctx: int | None = None


# `reused` of a reply whose server did not report its cache reuse: shown as "?", never 0.
REUSED_UNKNOWN = -1


def reused_figure(reused_tokens: int | None) -> int:
    """The status figure for a reply's `reused_tokens` (None: the server did not say)."""
    return REUSED_UNKNOWN if reused_tokens is None else reused_tokens


FIGURES = ("tok_s", "ttft", "reused", "context", "out_of_window", "seed")
NO_FIGURES: dict[str, Any] = {"tok_s": None, "ttft": None, "reused": None, "context": None,
                              "out_of_window": 0, "seed": None}


def figures_of(turn: Any) -> dict[str, Any]:
    """The status figures a stored model turn recorded (all unknown for None)."""
    if turn is None:
        return dict(NO_FIGURES)
    stats = turn.stats

    def number(key: str) -> Any:
        value = stats.get(key)
        return value if isinstance(value, (int, float)) and not isinstance(value, bool) else None

    context = number("context_tokens")
    window_end = number("window_end")
    reused = number("reused_tokens")
    if reused is None and "reused_tokens" in stats and "backend_flavor" in stats:
        reused = REUSED_UNKNOWN  # recorded as unknown by a server, not missing
    return {"tok_s": number("tokens_per_second"), "ttft": number("ttft"),
            "reused": reused, "context": context or None,
            "out_of_window": int(window_end if window_end is not None
                                 else number("window_start") or 0),
            "seed": turn.seed}


# Lower numbers stay longest when the bar is narrow.
PRIORITY = {"model": 0, "loading": 0, "context": 1, "state": 1, "reused": 2, "memory": 2,
            "preset": 3,
            "tok_s": 4, "ttft": 5, "seed": 6}


class StatusBar(Widget):
    """One line of state; `info` is replaced as a whole, then redrawn."""

    DEFAULT_CSS = "StatusBar { height: 1; }"

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.info = StatusInfo()

    def set(self, **changes) -> None:
        info = replace(self.info, **changes)
        if info != self.info:
            self.info = info
            self.refresh()  # one line, always: no relayout

    def render(self) -> Content:
        return self.render_info(self.content_region.width or 10_000)

    def parts(self) -> list[tuple[str, Content]]:
        """(kind, text) of every part, in the order shown."""
        i = self.info
        parts: list[tuple[str, Content]] = []
        if i.model:
            dev = f" ({' '.join(filter(None, (i.device, i.precision)))})" if i.device else ""
            parts.append(("model", Content.assemble(("● ", "$success"), (i.model, "bold"), dev)))
        elif not i.loading:
            parts.append(("model", Content.styled("○ no model", "$warning")))
        if i.loading:
            msg = f" {i.load_message}" if i.load_message else ""
            parts.append(("loading", Content.styled(
                f"◌ loading {i.loading} {i.load_fraction:.0%}{msg}", "$warning")))
        parts.append(("preset", Content.assemble(("preset ", "dim"), (i.preset or "-", "bold"))))
        if i.cancelling:
            parts.append(("state", Content.styled("cancelling…", "$warning")))
        elif i.generating:
            parts.append(("state", Content.styled("writing…", "$accent")))
        if i.tok_s is not None:
            parts.append(("tok_s", Content(f"{i.tok_s:.1f} tok/s")))
        if i.ttft is not None:
            parts.append(("ttft", Content(f"TTFT {i.ttft * 1000:.0f} ms")))
        if i.reused is not None:
            shown = "?" if i.reused == REUSED_UNKNOWN else i.reused
            parts.append(("reused", Content(f"reused {shown}")))
        limit = f"/{i.n_ctx}" if i.n_ctx else ""
        if i.context is not None:
            ctx = Content(f"ctx {i.context}{limit}")
            if i.out_of_window:  # the marker: this much of the oldest text is cut off
                ctx = Content.assemble(ctx, (f" ✂{i.out_of_window}", "$warning"))
            parts.append(("context", ctx))
        elif i.n_ctx:
            parts.append(("context", Content(f"ctx 0{limit}")))
        if i.memory:
            parts.append(("memory", Content(f"mem {i.memory}")))
        if i.seed is not None:
            parts.append(("seed", Content.styled(f"seed {i.seed}", "dim")))
        return parts

    def render_info(self, width: int = 10_000) -> Content:
        parts = self.parts()
        while len(parts) > 1 and _width(parts) > width:
            drop = max(range(len(parts)), key=lambda n: (PRIORITY[parts[n][0]], n))
            parts.pop(drop)
        return Content(SEPARATOR).join(text for _, text in parts)


def _width(parts: list[tuple[str, Content]]) -> int:
    return sum(cell_len(text.plain) for _, text in parts) + cell_len(SEPARATOR) * (len(parts) - 1)
