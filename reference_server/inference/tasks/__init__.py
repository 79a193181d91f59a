"""The tasks run on served models besides generation and embedding: classification (`classify`),
evaluation (`evaluate`) and tokenization (`tokens`). The heavy functions are synchronous; routes
run them in a bounded worker thread pool (torch releases the GIL while it computes), in batches
so no single call holds a model for long, and stop between batches once their caller has gone."""
