"""`python -m colorflow` is the `colorflow` command."""

import sys

from colorflow.cli import main

sys.exit(main())
