"""Inference engines: continuous-batching text generation and dynamic embedding batching.

Submodules import torch and transformers; import them where a model is actually served.
"""
