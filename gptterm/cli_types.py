"""argparse `type=` functions that check a flag's value before any model loads.

Each raises `argparse.ArgumentTypeError` with a message naming the value and the allowed
range, which argparse prints as one `error:` line (exit 2):

    int_range(lo, hi), positive_int, non_negative_int   integers in a range
    finite_float(lo, hi, lo_open=, hi_open=)           finite floats in a range
    seed_arg                                            0 <= seed < 2**63
    text_arg, read_text_arg                             valid UTF-8 text ("-": stdin)

`check_int` and `check_float` are the same rules as plain functions (ValueError), for
settings that do not come through argparse. Stdlib only.
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Callable
from typing import BinaryIO

INT_MAX = 2**31 - 1
SEED_LIMIT = 2**63  # torch.manual_seed and numpy take at most a signed 64-bit seed


def _show(text: object) -> str:
    from gptterm.tomlfiles import show_value

    return show_value(text)


def check_int(value: object, lo: int, hi: int) -> int:
    """`value` as an int in [lo, hi]; ValueError naming the value and range otherwise."""
    if isinstance(value, str):
        try:
            value = int(value.strip(), 10)
        except ValueError:
            raise ValueError(f"expected an integer from {lo} to {hi}, got {_show(value)}") \
                from None
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise ValueError(f"expected an integer from {lo} to {hi}, got {_show(value)}")
    return value


def _interval(lo: float, hi: float, lo_open: bool, hi_open: bool) -> str:
    return f"{'(' if lo_open else '['}{lo:g}, {hi:g}{')' if hi_open else ']'}"


def check_float(value: object, lo: float, hi: float, *, lo_open: bool = False,
                hi_open: bool = False) -> float:
    """`value` as a finite float in the interval; ValueError naming value and range."""
    expected = f"expected a finite number in {_interval(lo, hi, lo_open, hi_open)}"
    try:
        if isinstance(value, bool):
            raise TypeError
        number = float(value.strip() if isinstance(value, str) else value)  # type: ignore[arg-type]
    except (TypeError, ValueError, OverflowError):
        raise ValueError(f"{expected}, got {_show(value)}") from None
    inside = (lo < number if lo_open else lo <= number) and (
        number < hi if hi_open else number <= hi)
    if not math.isfinite(number) or not inside:
        raise ValueError(f"{expected}, got {_show(value)}")
    return number


def _argparse_type(check: Callable[[str], object], name: str) -> Callable[[str], object]:
    def parse(text: str) -> object:
        try:
            return check(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    parse.__name__ = name  # argparse names the type in some messages
    return parse


def int_range(lo: int, hi: int = INT_MAX) -> Callable[[str], object]:
    """An argparse type: an integer in [lo, hi]."""
    return _argparse_type(lambda text: check_int(text, lo, hi), "integer")


positive_int = int_range(1)
non_negative_int = int_range(0)
seed_arg = int_range(0, SEED_LIMIT - 1)


def finite_float(lo: float, hi: float, *, lo_open: bool = False,
                 hi_open: bool = False) -> Callable[[str], object]:
    """An argparse type: a finite float in the interval (open ends on request)."""
    return _argparse_type(
        lambda text: check_float(text, lo, hi, lo_open=lo_open, hi_open=hi_open), "number")


def check_text(text: str, what: str = "text") -> str:
    """`text` if it is valid Unicode; ValueError naming the first bad byte otherwise.

    argv is decoded with surrogateescape, so invalid UTF-8 arrives as lone surrogates.
    """
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        bad = text[exc.start]
        byte = f"byte 0x{ord(bad) - 0xDC00:02x}" if 0xDC80 <= ord(bad) <= 0xDCFF else \
            f"U+{ord(bad):04X}"
        raise ValueError(f"{what} is not valid UTF-8 ({byte} at character {exc.start}); "
                         "expected UTF-8 text") from None
    return text


def read_text(text: str, what: str = "prompt", stdin: BinaryIO | None = None) -> str:
    """`text`, or all of stdin when it is "-", checked to be valid UTF-8 (ValueError)."""
    if text != "-":
        return check_text(text, what)
    raw = (stdin or sys.stdin.buffer).read()
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(f"{what} from stdin is not valid UTF-8 (byte 0x{raw[exc.start]:02x} "
                         f"at offset {exc.start}); expected UTF-8 text") from None


text_arg = _argparse_type(check_text, "text")
read_text_arg = _argparse_type(read_text, "text")
