"""`gptterm presets`: list sampler presets; `gptterm presets show NAME`: resolved values;
`gptterm presets import FILE` / `export NAME --format F`: presets of other tools.

Presets come from the bundled folder and the user's config folder (a user file with the
same name wins). A file that fails to load is reported as one line on stderr; the others
are still listed.
"""

from __future__ import annotations

import argparse
import json
import sys

from gptterm.cli import UsageError

FORMATS = ("hf", "webui", "llama.cpp")  # as gptterm.preset_formats (imported late: YAML)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("presets", help="list sampler presets and where they come from")
    p.add_argument("--json", action="store_true", help="print the list as JSON")
    p.set_defaults(func=run_list)
    actions = p.add_subparsers(dest="presets_command", metavar="ACTION")
    show = actions.add_parser("show", help="print the resolved values of one preset")
    show.add_argument("name", metavar="NAME", help="preset name, as `gptterm presets` lists")
    show.add_argument("--set", dest="overrides", action="append", default=[],
                      metavar="KEY=VALUE", help="apply an override first (repeatable)")
    show.add_argument("--json", action="store_true", help="print the values as JSON")
    show.set_defaults(func=run_show)
    formats = "hf|webui|llama.cpp"
    imp = actions.add_parser(
        "import", help="make a preset from an HF generation_config.json, a "
        "text-generation-webui preset (YAML) or a llama.cpp server request body (JSON)")
    imp.add_argument("file", metavar="FILE", help="the other tool's file")
    imp.add_argument("--name", metavar="NAME",
                     help="the preset's name (default: the file name without its suffix)")
    imp.add_argument("--format", dest="fmt", metavar=formats, choices=FORMATS,
                     help="read FILE as this tool's file (default: tell by its keys)")
    imp.add_argument("--force", action="store_true",
                     help="replace a preset of yours with the same name")
    imp.set_defaults(func=run_import)
    exp = actions.add_parser("export", help="write a preset as another tool's settings")
    exp.add_argument("name", metavar="NAME", help="preset name, as `gptterm presets` lists")
    exp.add_argument("--format", dest="fmt", metavar=formats, choices=FORMATS, required=True,
                     help="hf: generation_config.json, webui: a text-generation-webui "
                     "preset (YAML), llama.cpp: a llama-server request body (JSON)")
    exp.add_argument("-o", "--output", metavar="FILE", help="write FILE (default: stdout)")
    exp.add_argument("--force", action="store_true", help="replace FILE if it exists")
    exp.set_defaults(func=run_export)


def run_list(args: argparse.Namespace) -> int:
    from gptterm import paths, presets

    loaded, failed = presets.load_presets()
    for line in failed:  # one line per broken file; the rest are still listed
        print(f"gptterm: {line}", file=sys.stderr)
    if args.json:
        print(json.dumps([{"name": p.name, "source": p.source, "summary": p.summary(),
                           "description": p.description,
                           "default": p.name == presets.DEFAULT_PRESET}
                          for p in loaded.values()], ensure_ascii=False, indent=2))
        return 0
    rows = [("NAME", "SOURCE", "SUMMARY")]
    for p in loaded.values():
        mark = " *" if p.name == presets.DEFAULT_PRESET else ""
        rows.append((p.name + mark, p.source, p.summary()))
    widths = [max(len(r[i]) for r in rows) for i in range(2)]
    for name, source, summary in rows:
        print(f"{name.ljust(widths[0])}  {source.ljust(widths[1])}  {summary}")
    print(f"\n* default. Your own presets go in {paths.user_presets_dir()} "
          "(a file with a bundled preset's name replaces it).")
    return 0


def _loaded(name: str):
    """The loaded preset `name`; UsageError (its file's one line, or the names there are)."""
    from gptterm import presets

    loaded, failed = presets.load_presets()
    preset = loaded.get(name)
    if preset is None:
        broken = [line for line in failed if f"{name}.toml" in line]
        if broken:
            raise UsageError(broken[0])
        raise UsageError(f"no preset named {name!r}: expected one of "
                         f"{', '.join(sorted(loaded)) or '(none loaded)'}")
    return preset


def run_show(args: argparse.Namespace) -> int:
    from gptterm import presets

    preset = _loaded(args.name)
    try:
        preset = presets.apply_assignments(preset, args.overrides)
    except presets.PresetError as exc:
        raise UsageError(str(exc)) from None
    values = preset.values()
    if args.json:
        print(json.dumps({**values, "source": preset.source}, ensure_ascii=False, indent=2))
        return 0
    print(render_toml(preset))
    return 0


def render_toml(preset) -> str:
    """Every resolved value as a valid preset file (name and source as comments), so
    `gptterm presets show X > my.toml` is a starting point for a new preset."""
    import tomli_w

    values = preset.values()
    values.pop("name")
    unset = [k for k, v in values.items() if v is None]
    body = tomli_w.dumps({k: v for k, v in values.items() if v is not None})
    head = [f"# preset {preset.name!r} from {preset.source or '(built in)'}"]
    head += [f"# {key}: not set" + (" (a fresh random seed for every request)"
                                     if key == "seed" else "") for key in unset]
    return "\n".join(head) + "\n" + body.rstrip("\n")


def _preset_name(name: str) -> str:
    """A name that is a plain file name in the presets folder."""
    import re

    if not re.fullmatch(r"\w[\w.+-]{0,63}", name) or name.endswith(".toml"):
        from gptterm.tomlfiles import show_value

        raise UsageError(f"--name {show_value(name)}: expected up to 64 letters, digits, "
                         "'.', '_', '-' or '+' (the preset file is NAME.toml)")
    return name


def run_import(args: argparse.Namespace) -> int:
    from pathlib import Path

    from gptterm import paths, preset_formats, presets
    from gptterm.safefile import replace_file
    from gptterm.textsafe import inert
    from gptterm.tomlfiles import one_line

    path = Path(args.file)
    where = inert(str(path), single_line=True)
    name = _preset_name(args.name if args.name is not None else path.stem)
    target = paths.user_presets_dir() / f"{name}.toml"
    if target.exists() and not args.force:
        raise UsageError(f"{inert(str(target), single_line=True)} exists: expected --force to "
                         "replace it, or another --name")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"{where}: cannot read: {one_line(exc)}") from None
    try:
        fmt, preset, notes = preset_formats.import_text(text, name, where, args.fmt)
    except presets.PresetError as exc:
        raise UsageError(str(exc)) from None
    print(f"{where}: read as {preset_formats.LABELS[fmt]}")
    for line in notes:
        print(line)
    head = f"# imported from {where} ({preset_formats.TOOLS[fmt]}) by `gptterm presets import`\n"
    target.parent.mkdir(parents=True, exist_ok=True)
    replace_file(target, head + preset_formats.preset_toml(preset))
    bundled = (paths.bundled_presets_dir() / f"{name}.toml").exists()
    print(f"wrote {inert(str(target), single_line=True)}: preset {name!r}: {preset.summary()}"
          + (" (it replaces the bundled preset of that name)" if bundled else ""))
    return 0


def run_export(args: argparse.Namespace) -> int:
    from pathlib import Path

    from gptterm import preset_formats
    from gptterm.safefile import replace_file
    from gptterm.textsafe import inert

    preset = _loaded(args.name)
    out = Path(args.output) if args.output is not None else None
    shown = inert(str(out), single_line=True)
    if out is not None and out.is_file() and not args.force:
        raise UsageError(f"{shown} exists: expected --force to replace it")
    data, notes = preset_formats.from_preset(args.fmt, preset)
    text = preset_formats.dumps(args.fmt, data)
    for line in notes:  # stderr: stdout is the file
        print(line, file=sys.stderr)
    if out is None:
        sys.stdout.write(text)
        return 0
    try:
        replace_file(out, text)
    except OSError as exc:
        raise UsageError(f"{shown}: cannot write: {exc.strerror or exc}") from None
    print(f"wrote {shown} ({preset_formats.LABELS[args.fmt]})")
    return 0
