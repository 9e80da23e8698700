"""`python -m segkit ...` runs the same command line as `segkit ...`."""

import sys

from segkit.cli import main

sys.exit(main())
