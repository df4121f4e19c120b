"""`gptterm presets`: list sampler presets; `gptterm presets show NAME`: resolved values.

Presets come from the bundled folder and the user's config folder (a user file with the
same name wins). A file that fails to load is reported as one line on stderr; the others
are still listed.
"""

from __future__ import annotations

import argparse
import json
import sys

from gptterm.cli import UsageError


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


def run_show(args: argparse.Namespace) -> int:
    from gptterm import presets

    loaded, failed = presets.load_presets()
    preset = loaded.get(args.name)
    if preset is None:
        broken = [line for line in failed if f"{args.name}.toml" in line]
        if broken:
            raise UsageError(broken[0])
        raise UsageError(f"no preset named {args.name!r}: expected one of "
                         f"{', '.join(sorted(loaded)) or '(none loaded)'}")
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
