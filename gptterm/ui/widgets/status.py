"""The status bar: model and device, preset, speed, time to first token, cache reuse, context."""

from __future__ import annotations

from dataclasses import dataclass, replace

from textual.content import Content
from textual.widgets import Static


@dataclass(frozen=True)
class StatusInfo:
    """Everything the status bar shows; None means "not known yet"."""

    model: str | None = None
    device: str | None = None
    preset: str = ""
    loading: str | None = None  # model being loaded
    load_fraction: float = 0.0
    load_message: str = ""
    generating: bool = False
    cancelling: bool = False
    tok_s: float | None = None
    ttft: float | None = None
    reused: int | None = None
    context: int | None = None
    n_ctx: int | None = None
    out_of_window: int = 0  # tokens of the oldest text the model no longer sees


class StatusBar(Static):
    """One line of state; `info` is replaced as a whole, then redrawn."""

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.info = StatusInfo()

    def set(self, **changes) -> None:
        info = replace(self.info, **changes)
        if info != self.info:
            self.info = info
            self.update(self.render_info(), layout=False)  # one line, always: no relayout

    def render_info(self) -> Content:
        i = self.info
        parts: list[Content] = []
        if i.model:
            dev = f" ({i.device})" if i.device else ""
            parts.append(Content.assemble(("● ", "$success"), (i.model, "bold"), dev))
        elif not i.loading:
            parts.append(Content.styled("○ no model", "$warning"))
        if i.loading:
            msg = f" {i.load_message}" if i.load_message else ""
            parts.append(Content.styled(
                f"◌ loading {i.loading} {i.load_fraction:.0%}{msg}", "$warning"))
        parts.append(Content.assemble(("preset ", "dim"), (i.preset or "-", "bold")))
        if i.cancelling:
            parts.append(Content.styled("cancelling…", "$warning"))
        elif i.generating:
            parts.append(Content.styled("writing…", "$accent"))
        if i.tok_s is not None:
            parts.append(Content(f"{i.tok_s:.1f} tok/s"))
        if i.ttft is not None:
            parts.append(Content(f"TTFT {i.ttft * 1000:.0f} ms"))
        if i.reused is not None:
            parts.append(Content(f"reused {i.reused}"))
        if i.context is not None:
            limit = f"/{i.n_ctx}" if i.n_ctx else ""
            parts.append(Content(f"ctx {i.context}{limit}"))
            if i.out_of_window:  # the marker: this much of the oldest text is cut off
                parts[-1] = Content.assemble(parts[-1], (f" ✂{i.out_of_window}", "$warning"))
        elif i.n_ctx:
            parts.append(Content(f"ctx 0/{i.n_ctx}"))
        return Content(" │ ").join(parts)
