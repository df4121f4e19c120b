"""Subcommands of the `gptterm` CLI; each module has `register(subparsers)`."""
