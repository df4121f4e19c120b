"""Driving an existing serving engine (llama.cpp server, vLLM, SGLang, TGI, Ollama, any
OpenAI-compatible server) exactly as the local engine is driven.

`flavors` is the capability table and the preset translation, `sse` the stream readers,
`detect` the flavour and server probes, `engine.RemoteEngine` the Engine API over HTTP,
`routing.RoutingEngine` what the app and the CLI build: it sends each model name to the
local engine or to a server. Stdlib only (http.client and threads).
"""

from __future__ import annotations

REMOTE_PREFIX = "remote:"


def is_remote(name: str | None) -> bool:
    """Whether a model name names a server: `http://...`, `https://...` or `remote:NAME`."""
    return bool(name) and (name.startswith(("http://", "https://", REMOTE_PREFIX)))
