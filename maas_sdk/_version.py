"""The SDK's version, sent in the `User-Agent` header and exported as `maas_sdk.__version__`."""

__version__ = "0.1.0"
