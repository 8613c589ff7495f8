"""`python -m ivr`: the same command line as `ivr`."""

import sys

from ivr.cli import main

sys.exit(main())
