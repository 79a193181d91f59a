"""Fine-tuning: the plan of a job, the training loop, the worker process that runs it, and the
server-side supervisor that queues jobs and serves their results.

The worker's exit codes (and the variable naming its database) live here, where both the supervisor and the worker can import them
without the supervisor importing the worker module (which runs as `python -m`).
"""

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_STOPPED = 3  # asked to stop; a checkpoint of its position was saved if it had made progress
EXIT_SUPERSEDED = 4  # the job is no longer this worker's (cancelled, or re-queued after a restart)

# How the supervisor tells a worker where the shared database is (kept out of its command line).
DATABASE_URL_ENV = "MAAS_DATABASE_URL"
