"""HTTP routes, one module per feature, each declaring its operations in a `RouteTable`.

`OPERATIONS` is every operation in the order the app mounts them; the app serves exactly these
and the OpenAPI document describes exactly these.
"""

from reference_server.http.routes import (
    batches,
    chat,
    classifications,
    completions,
    embeddings,
    evaluations,
    files,
    fine_tuning,
    health,
    messages,
    models,
    playground,
    rerank,
    responses,
    tokenize,
    usage,
    vllm_tokenizer,
)
from reference_server.http.routing import Operation

TABLES = (health.table, models.table, completions.table, chat.table, embeddings.table, files.table,
          fine_tuning.table, classifications.table, tokenize.table, vllm_tokenizer.table,
          evaluations.table, usage.table, messages.table, responses.table, rerank.table, batches.table,
          playground.table)
OPERATIONS: tuple[Operation, ...] = tuple(op for table in TABLES for op in table.operations)
