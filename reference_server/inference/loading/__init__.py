"""Loading models: specs, weight sources, device policy, the GGUF cache and quantization."""

from maas_sdk.protocol.vocabulary import Task
from reference_server.inference.loading.device import configure_threads, resolve_device
from reference_server.inference.loading.gguf import CONVERSION_MARKER, ensure_converted
from reference_server.inference.loading.loader import load_model
from reference_server.inference.loading.quantize import INT8_KEEP_FLOAT, quantize_int8
from reference_server.inference.loading.sources import default_specs
from reference_server.inference.loading.spec import LoadedModel, ModelSpec

__all__ = ["CONVERSION_MARKER", "INT8_KEEP_FLOAT", "LoadedModel",
           "ModelSpec", "Task", "configure_threads", "default_specs", "ensure_converted", "load_model",
           "quantize_int8", "resolve_device"]
