"""`python -m gptterm` runs the command line."""

from gptterm.cli import main

raise SystemExit(main())
