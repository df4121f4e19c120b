"""`gptterm models` lists the catalog; `gptterm download NAME` fetches a hub model.

Loading never downloads (offline it would hang on retries), so fetching a hub model
into the local Hugging Face cache is this one explicit step, on a connected machine.
Listing reads each model's config.json with the stdlib only (no transformers import),
so it stays fast.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import sys
from pathlib import Path

from gptterm.cli import UsageError
from gptterm.errors import first_line

# Enough to load and generate: config, weights, tokenizer files.
_PATTERNS = ["*.json", "*.txt", "*.model", "*.safetensors", "merges.txt", "vocab.*"]
# Seconds to wait for the hub to answer: an unreachable hub fails in seconds, not minutes.
HUB_TIMEOUT_S = 5
# Where a model's config.json gives its window, in the order transformers' GPT-2 reads them.
_WINDOW_KEYS = ("n_positions", "n_ctx", "max_position_embeddings")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "models", help="list known models, their context windows and where they load from",
        description="List the catalog: shipped models, models you used from a folder, and "
        "hub models, with their language, context window (tokens), whether they load "
        "offline, and where from; then the model servers of config.toml ([backends.NAME], "
        "used as --model remote:NAME) and whether each answers.")
    p.add_argument("--json", action="store_true",
                   help="one JSON object per model per line: name, source, language, "
                   "description, available, n_ctx (and flavor, version for a server)")
    p.set_defaults(func=run)
    d = sub.add_parser(
        "download", help="fetch a hub model into the local cache (needs network)",
        description="Fetch a hub model (config, weights, tokenizer) into the local Hugging "
        "Face cache, so that it loads offline afterwards. Needs a network connection; "
        "shipped and local models need no download.")
    d.add_argument("name", help="catalog name or hub id, e.g. gpt2 or skt/kogpt2-base-v2")
    d.set_defaults(func=download)


def config_path(spec) -> Path | None:
    """The config.json a model loads with: in its folder, or in the hub cache."""
    from gptterm import catalog

    if spec.local:
        return Path(spec.source) / "config.json"
    repo = catalog.hub_cache_dir() / ("models--" + spec.source.replace("/", "--"))
    try:  # the snapshot `main` points at, else any cached one
        main = (repo / "refs" / "main").read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError):
        main = ""
    if main and (repo / "snapshots" / main / "config.json").is_file():
        return repo / "snapshots" / main / "config.json"
    found = sorted((repo / "snapshots").glob("*/config.json")) if repo.is_dir() else []
    return found[0] if found else None


def context_size(spec) -> int | None:
    """The model's window in tokens from its config.json; None when unknown."""
    path = config_path(spec)
    if path is None:
        return None
    try:
        config = json.loads(path.read_bytes())
    except (OSError, ValueError, RecursionError):
        return None
    if not isinstance(config, dict):
        return None
    for key in _WINDOW_KEYS:
        value = config.get(key)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
    return None


def run(args: argparse.Namespace) -> int:
    from gptterm import catalog
    from gptterm.commands.sessions import columns, json_line, label

    specs = catalog.all_models()
    backends = backend_rows()
    if args.json:
        for spec in specs:
            print(json_line({"name": spec.name, "source": spec.source,
                             "language": spec.language, "description": spec.description,
                             "available": spec.available_offline(),
                             "n_ctx": context_size(spec)}))
        from gptterm.protocol import Backend

        for name, url, answer in backends:
            info = answer if not isinstance(answer, str) else None
            print(json_line({"name": name, "source": url, "language": "?",
                             "description": answer if info is None else
                             Backend(info.flavor, info.version, url).describe(),
                             "available": info is not None,
                             "n_ctx": (info.n_ctx or None) if info else None,
                             "flavor": info.flavor if info else None,
                             "version": info.version if info else None}))
        return 0
    rows = [("NAME", "LANG", "CONTEXT", "OFFLINE", "FROM", "ABOUT")]
    for spec in specs:
        n_ctx = context_size(spec)
        rows.append((label(spec.name), label(spec.language),
                     "?" if n_ctx is None else str(n_ctx),
                     "yes" if spec.available_offline() else "no", label(spec.where),
                     label(spec.description)))
    for line in columns(rows):
        print(line)
    print("\nCONTEXT is the window in tokens. Any local checkpoint directory also works: "
          "--model PATH. Hub models must be in the local Hugging Face cache: "
          "`gptterm download NAME` on a connected machine.")
    if backends:
        rows = [("SERVER", "URL", "ANSWERS")]
        for name, url, answer in backends:
            said = f"no: {answer}" if isinstance(answer, str) else \
                f"yes: {answer.flavor} {answer.version}".rstrip()
            rows.append((label(name), label(url), label(said)))
        print()
        for line in columns(rows):
            print(line)
    return 0


def backend_rows() -> list[tuple[str, str, object]]:
    """(remote:NAME, URL, ServerInfo or why it does not answer) of each [backends] table
    of config.toml, asked all at once (each probe gives up within seconds)."""
    from concurrent.futures import ThreadPoolExecutor

    from gptterm.remote.detect import probe
    from gptterm.remote.httpclient import public_url
    from gptterm.remote.routing import BackendError, load_backends, resolve_target

    def ask(name: str):
        try:
            target = resolve_target(f"remote:{name}", tables)
        except BackendError as exc:
            return str(exc)
        return probe(target.url, target.flavor, target.model, target.api_key)

    tables = load_backends()
    names = sorted(tables)
    with ThreadPoolExecutor(max_workers=max(1, min(8, len(names)))) as pool:
        answers = list(pool.map(ask, names))
    return [(f"remote:{n}", public_url(tables[n].url), a) for n, a in zip(names, answers)]


def network_problem(exc: BaseException | None) -> str | None:
    """Why the hub could not be reached, when that is what `exc` (or an error it was
    raised from) says; None for other errors (no such repo, a full disk ...).

    huggingface_hub wraps the transport error (httpx, or requests in older versions)
    in its own; classes are matched by name, so no HTTP library is imported here.
    """
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        names = {cls.__name__ for cls in type(exc).__mro__}
        if "OfflineModeIsEnabled" in names:
            return "offline mode is on (HF_HUB_OFFLINE is set)"
        if isinstance(exc, (ConnectionError, TimeoutError, socket.gaierror)) or names & {
                "TransportError", "TimeoutException", "ConnectionError", "Timeout"}:
            return "no network connection (the hub is unreachable)"
        exc = exc.__cause__ or exc.__context__
    return None


def download(args: argparse.Namespace) -> int:
    from gptterm import catalog
    from gptterm.commands.sessions import label

    spec = catalog.resolve(args.name)
    if spec.local:
        raise UsageError(f"{label(args.name)} is a local model ({label(spec.source)}): "
                         "nothing to download")
    os.environ.setdefault("HF_HUB_ETAG_TIMEOUT", str(HUB_TIMEOUT_S))
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    from huggingface_hub import HfApi, snapshot_download

    what = label(spec.name if spec.name == spec.source else f"{spec.name} ({spec.source})")
    try:
        # A short answer first: snapshot_download would wait on an unreachable hub for
        # as long as the system's TCP timeout (minutes).
        HfApi().model_info(spec.source, timeout=HUB_TIMEOUT_S)
        path = snapshot_download(spec.source, allow_patterns=_PATTERNS,
                                 etag_timeout=HUB_TIMEOUT_S)
    except Exception as exc:  # noqa: BLE001 - network and hub errors come in many types
        why = network_problem(exc)
        if why is None:
            raise UsageError(f"cannot download {what}: {label(first_line(exc))}") from None
        local = [label(s.name) for s in catalog.all_models() if s.available_offline()]
        print(f"gptterm: cannot download {what}: {why}; models already on this machine: "
              f"{', '.join(local) or 'none'}", file=sys.stderr)
        return 1
    print(f"{label(spec.name)}: downloaded to {label(path)}")
    return 0
