"""Which serving engine answers at a URL, its version, window and model.

Each flavour has an endpoint only it answers: llama.cpp `GET /props`, SGLang
`GET /get_server_info`, vLLM `GET /version`, TGI `GET /info`, Ollama `GET /api/version`;
any OpenAI-compatible server answers `GET /v1/models`. Probes are short (a few seconds
each), and a server that does not answer at all fails at the first one, in one line.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from gptterm.remote.flavors import FLAVORS
from gptterm.remote.httpclient import RemoteError, Server, Unreachable

AUTO = "auto"


@dataclass(frozen=True)
class ServerInfo:
    """What a server said about itself: flavour, version ("" unknown), window (0 unknown),
    the model id requests name (None: the server has one model and needs no name), and
    the model it serves (an id or file name, "" unknown), which a turn records."""

    flavor: str
    version: str
    n_ctx: int
    model: str | None
    served: str = ""


def _reachable(server: Server, path: str) -> Any:
    """The JSON at `path`, or None when the server answers there with an error (another
    flavour); RemoteError when it does not answer at all."""
    try:
        return server.get_json(path)
    except Unreachable:
        raise
    except RemoteError:
        return None


def detect_flavor(server: Server) -> str:
    """The flavour answering at `server` (see the module docstring)."""
    for path, flavor in (("/props", "llama.cpp"), ("/get_server_info", "sglang"),
                         ("/version", "vllm"), ("/info", "tgi"), ("/api/version", "ollama"),
                         ("/v1/models", "openai")):
        data = _reachable(server, path)
        if isinstance(data, dict) and _looks_like(flavor, data):
            return flavor
    raise RemoteError(f"{server.url} answers, but not as llama.cpp, vLLM, SGLang, TGI, Ollama "
                      "or an OpenAI-compatible server: set flavor in its [backends] table")


def _looks_like(flavor: str, data: dict) -> bool:
    if flavor == "llama.cpp":
        return "default_generation_settings" in data or "build_info" in data
    if flavor == "tgi":
        return "model_id" in data
    if flavor in ("vllm", "ollama"):
        return "version" in data
    if flavor == "sglang":
        return "version" in data or "server_args" in data
    return isinstance(data.get("data"), list)


def server_info(server: Server, flavor: str, model: str | None) -> ServerInfo:
    """Ask the server (of a known flavour) for its version, window and model id."""
    if flavor not in FLAVORS:
        raise RemoteError(f"unknown flavor {flavor!r}: expected {AUTO} or one of "
                          f"{', '.join(FLAVORS)}")
    if flavor == "llama.cpp":
        props = _dict(server.get_json("/props"))
        settings = _dict(props.get("default_generation_settings"))
        served = _text(props.get("model_alias")) or _text(props.get("model_path"))
        return ServerInfo(flavor, _text(props.get("build_info")), _int(settings.get("n_ctx")),
                          model, served.replace("\\", "/").rsplit("/", 1)[-1])
    if flavor == "tgi":
        info = _dict(server.get_json("/info"))
        version = " ".join(x for x in (_text(info.get("version")), _text(info.get("sha"))[:7])
                           if x)
        return ServerInfo(flavor, version, _int(info.get("max_total_tokens")), None,
                          _text(info.get("model_id")))
    if flavor == "ollama":
        version = _text(_dict(server.get_json("/api/version")).get("version"))
        if model is None:
            tags = _dict(server.get_json("/api/tags")).get("models") or []
            names = [_text(_dict(t).get("name")) for t in tags if _dict(t).get("name")]
            if not names:
                raise RemoteError(f"{server.url} serves no model: `ollama pull` one first")
            model = names[0]
        return ServerInfo(flavor, version, 0, model, model)
    # OpenAI-compatible: the model list gives the id (and vLLM/SGLang the window).
    version = ""
    if flavor == "vllm":
        version = _text(_dict(server.get_json("/version")).get("version"))
    elif flavor == "sglang":
        version = _text(_dict(server.get_json("/get_server_info")).get("version"))
    models = [_dict(m) for m in (_dict(server.get_json("/v1/models")).get("data") or [])]
    chosen = next((m for m in models if m.get("id") == model), None) if model else \
        (models[0] if models else None)
    if chosen is None:
        known = ", ".join(_text(m.get("id")) for m in models) or "none"
        raise RemoteError(f"{server.url} does not serve model {model!r} (it serves: {known})"
                          if model else f"{server.url} serves no model")
    served = _text(chosen.get("id")) or model
    return ServerInfo(flavor, version, _int(chosen.get("max_model_len")), served, served or "")


def _dict(value: Any) -> dict:
    return value if isinstance(value, dict) else {}


def _text(value: Any) -> str:
    return value.strip() if isinstance(value, str) else ""


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def probe(url: str, flavor: str = AUTO, model: str | None = None,
          api_key: str | None = None) -> ServerInfo | str:
    """What answers at `url` (its ServerInfo), or why nothing usable does (one line)."""
    try:
        server = Server(url, api_key)
        return server_info(server, detect_flavor(server) if flavor == AUTO else flavor, model)
    except RemoteError as exc:
        return str(exc)
