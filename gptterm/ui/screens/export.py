"""Export the open session to a file: pick a format, edit the path, write it.

The file is written all at once (`safefile.replace_file`), only at the path in the
box (a relative one is under the export folder, and the state line says where). An
existing file is replaced only after a second Enter; a link, a folder or a device
is refused, since writing there would change something other than the file named.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from pathlib import Path

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.content import Content
from textual.screen import ModalScreen
from textual.widgets import Input, Label, RadioButton, RadioSet

from gptterm.errors import first_line
from gptterm.safefile import replace_file
from gptterm.textsafe import inert
from gptterm.ui.screens.dialogs import after_typing

# (format, file extension, label)
FORMATS = (
    ("md", "md", "Markdown: turns with headings and stats"),
    ("json", "json", "JSON: everything, to import again"),
    ("story", "txt", "Story: the text alone"),
)
EXTENSIONS = {fmt: ext for fmt, ext, _ in FORMATS}
SLUG_CHARS = 60
HINT = "↑/↓ format · Enter or Ctrl+S writes · Esc cancels"


def slug(title: str) -> str:
    """A file name stem from a title: letters and digits of any script, joined by '-'."""
    words = re.findall(r"[^\W_]+", title.casefold())
    return "-".join(words)[:SLUG_CHARS].strip("-") or "session"


def default_path(folder: Path, title: str, fmt: str) -> Path:
    return folder / f"{slug(title)}.{EXTENSIONS[fmt]}"


def with_extension(text: str, fmt: str) -> str:
    """`text` with a known extension swapped for `fmt`'s (other names kept as typed)."""
    stem, dot, ext = text.rpartition(".")
    if dot and ext in EXTENSIONS.values() and stem and not stem.endswith(("/", "\\")):
        return f"{stem}.{EXTENSIONS[fmt]}"
    return text


def target_problem(path: Path) -> str:
    """Why `path` cannot be written as a new or replaced plain file ('' if it can)."""
    if not path.name or path.name in (".", ".."):
        return f"{path}: expected a file name"
    if path.is_symlink():
        return f"{path}: is a link: expected a plain file (write to where it points)"
    if path.is_dir():
        return f"{path}: is a folder: expected a file name"
    if path.exists() and not path.is_file():
        return f"{path}: not a plain file: expected a file name"
    if not path.parent.is_dir():
        return f"{path.parent}: no such folder"
    return ""


class ExportScreen(ModalScreen[Path | None]):
    """Write the session as `render(fmt)` gives it; dismisses with the written path, or None."""

    BINDINGS = [
        Binding("escape", "cancel", "Cancel"),
        Binding("ctrl+s", "write", "Write", priority=True),
        Binding("down", "format(1)", "Next format", show=False),
        Binding("up", "format(-1)", "Previous format", show=False),
    ]

    def __init__(self, title: str, default_dir: Path, render: Callable[[str], str],
                 fmt: str = "md") -> None:
        super().__init__(classes="dialog export")
        self.session_title = title
        self.default_dir = Path(default_dir)
        self.render_text = render
        self.fmt = fmt if fmt in EXTENSIONS else "md"
        self._confirm: tuple[Path, str] | None = None  # (path, format) a second Enter replaces

    def compose(self) -> ComposeResult:
        title = inert(self.session_title, single_line=True)
        with Vertical(classes="box"):
            yield Label(Content.assemble(("Export ", "bold"), (title, "bold $accent")),
                        classes="question")
            with RadioSet(id="export-format"):
                for fmt, ext, label in FORMATS:
                    yield RadioButton(f"{label} (.{ext})", value=fmt == self.fmt, name=fmt)
            yield Input(inert(str(default_path(self.default_dir, self.session_title, self.fmt)),
                              single_line=True),
                        id="export-path", select_on_focus=False)
            yield Label("", id="export-state")
            yield Label(Content.styled(HINT, "dim"), classes="hint")

    def on_mount(self) -> None:
        path_input = self.query_one(Input)
        path_input.focus()
        path_input.cursor_position = len(path_input.value)

    def target(self) -> Path:
        """The file the box names (a relative path is under the export folder)."""
        path = Path(self.query_one(Input).value.strip()).expanduser()
        return path if path.is_absolute() else self.default_dir / path

    def say(self, text: str, style: str = "dim") -> None:
        self.query_one("#export-state", Label).update(
            Content.styled(inert(text, single_line=True), style))

    def on_radio_set_changed(self, event: RadioSet.Changed) -> None:
        event.stop()
        self.fmt = event.pressed.name or "md"
        path_input = self.query_one(Input)
        path_input.value = with_extension(path_input.value, self.fmt)

    def action_format(self, step: int) -> None:
        """Up/Down in the path box choose the format (the radio set has its own keys)."""
        buttons = list(self.query(RadioButton))
        names = [b.name for b in buttons]
        index = names.index(self.fmt) if self.fmt in names else 0
        buttons[max(0, min(len(buttons) - 1, index + step))].value = True

    def on_input_changed(self, event: Input.Changed) -> None:
        event.stop()
        self._confirm = None
        typed = Path(event.value.strip()).expanduser()
        self.say("" if typed.is_absolute() or not event.value.strip()
                 else f"writes {self.target()}")

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self._write()

    def action_write(self) -> None:
        after_typing(self, self._write)

    def _write(self) -> None:
        typed = self.query_one(Input).value.strip()
        if not typed or typed.endswith(("/", os.sep)):
            self.say(f"{typed or 'the path'}: expected a file name", "$error")
            return
        path = self.target()
        try:
            problem = target_problem(path)
            exists = path.exists()
        except OSError as exc:  # a folder on the way we may not look into
            problem = f"{path}: cannot check: {exc.strerror or first_line(exc)}"
        if problem:
            self.say(problem, "$error")
            return
        if exists and self._confirm != (path, self.fmt):
            self._confirm = (path, self.fmt)
            self.say(f"{path} exists: press Enter again to replace it", "$warning")
            return
        try:
            text = self.render_text(self.fmt)
        except Exception as exc:  # noqa: BLE001 - a store error: the screen stays, says why
            self.say(f"cannot export: {first_line(exc)}", "$error")
            return
        try:
            replace_file(path, text)
        except OSError as exc:
            self.say(f"{path}: cannot write: {exc.strerror or first_line(exc)}", "$error")
            return
        self.dismiss(path)

    def action_cancel(self) -> None:
        self.dismiss(None)
