"""gptterm: a terminal app for writing with GPT-2-family language models."""

__version__ = "0.1.0"
