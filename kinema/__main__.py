"""`python -m kinema` runs the `kinema` command."""

import sys

from kinema.cli import main

sys.exit(main())
