"""`python -m reference_server.batch -i requests.jsonl -o results.jsonl` (see `offline`)."""

import sys

from reference_server.batch.offline import main

sys.exit(main())
