"""The generation engine: one worker thread that owns the model, tokenizer and KV caches.

Nothing here imports torch at module import time; the worker thread imports it.
"""
