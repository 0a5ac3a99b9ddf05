"""`python -m graddesc`: see graddesc.cli."""

import sys

from graddesc.cli import main

if __name__ == "__main__":
    sys.exit(main())
