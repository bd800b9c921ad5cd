"""The S3-compatible endpoint (request authentication lives in ``sigv4``,
``sigv2``, ``chunked`` and ``postpolicy``)."""
