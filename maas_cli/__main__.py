"""`python -m maas_cli ...` is the same as the `maas` command."""

import sys

from maas_cli import main

sys.exit(main())
