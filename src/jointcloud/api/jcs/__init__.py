"""The JCS v1 REST API (``docs/jcs-v1.md``)."""
