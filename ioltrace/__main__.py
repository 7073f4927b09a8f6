"""`python -m ioltrace`: the same as the ioltrace command."""

import sys

from .cli import main

sys.exit(main())
