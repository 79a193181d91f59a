"""`python -m reference_server ...` is the same as the `maas` command."""

import sys

from reference_server.cli import main

sys.exit(main())
