"""Constants the tests share: the session server's API key and the default models' ids."""

from maas_sdk.protocol.vocabulary import DEFAULT_EMBEDDER, DEFAULT_GENERATOR

API_KEY = "sk-test-0123456789"
GENERATOR = DEFAULT_GENERATOR
EMBEDDER = DEFAULT_EMBEDDER
