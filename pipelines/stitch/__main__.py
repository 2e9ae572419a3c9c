"""`python -m pipelines.stitch`: the same commands as `colorflow dataset`."""

from __future__ import annotations

import sys

from pipelines.stitch.cli import main

if __name__ == "__main__":
    sys.exit(main())
