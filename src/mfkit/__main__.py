"""``python -m mfkit``: the command-line interface."""

from mfkit.cli import main

raise SystemExit(main())
