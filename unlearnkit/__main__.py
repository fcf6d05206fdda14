"""`python -m unlearnkit` runs the command line."""

import sys

from unlearnkit.cli.commands import main

if __name__ == "__main__":
    sys.exit(main())
