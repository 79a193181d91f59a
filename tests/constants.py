"""Constants the tests share: the session server's API key, the default models' ids, where the engine tests run."""

import os

from maas_sdk.protocol.vocabulary import DEFAULT_EMBEDDER, DEFAULT_GENERATOR

API_KEY = "sk-test-0123456789"
# The session server's other keys: the two tenants of the usage walk-through in docs/fine-tuning.md,
# a key whose use the usage tests count from zero, and one with a monthly budget of a few tokens.
TEAM_KEYS = ("sk-team-a", "sk-team-b")
USAGE_KEY = "sk-test-usage-5e0c2a"
BUDGET_KEY = "sk-test-budget-91f3d7"
BUDGET_TOKENS = 40
GENERATOR = DEFAULT_GENERATOR
EMBEDDER = DEFAULT_EMBEDDER

# Where the in-process engine tests (tests/server) run: CPU in float32 unless told otherwise
# (bench/gpu_check.sh runs them on CUDA in float16 and bfloat16), and how close logits and
# vectors computed in different batch shapes must be there.
DEVICE = os.environ.get("MAAS_TEST_DEVICE", "cpu")
DTYPE = os.environ.get("MAAS_TEST_DTYPE", "float32")
LOGITS_ATOL = 2e-4 if DTYPE == "float32" else 0.5
VECTORS_ATOL = 1e-5 if DTYPE == "float32" else 1e-2

# Compute threads of the servers the e2e tests start: the cores shared out among the pytest-xdist
# workers (`make test` runs two), since every worker runs its own session server and more busy
# threads than cores make each forward pass wait. MAAS_THREADS overrides it.
XDIST_WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
SERVER_THREADS = os.environ.get("MAAS_THREADS", str(max(1, (os.cpu_count() or 1) // XDIST_WORKERS)))
