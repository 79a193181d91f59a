"""Loading models: specs, weight sources, device policy, the GGUF cache and quantization."""

from maas_sdk.protocol.vocabulary import Task
from reference_server.inference.loading.device import (
           auto_dtype,
           configure_threads,
           cpu_flags,
           cpu_model,
           resolve_device,
)
from reference_server.inference.loading.gguf import CONVERSION_MARKER, ensure_converted
from reference_server.inference.loading.loader import load_model
from reference_server.inference.loading.sources import default_specs
from reference_server.inference.loading.spec import LoadedModel, ModelSpec

__all__ = ["CONVERSION_MARKER", "LoadedModel", "ModelSpec", "Task", "auto_dtype",
           "configure_threads", "cpu_flags", "cpu_model", "default_specs", "ensure_converted", "load_model", "resolve_device"]
