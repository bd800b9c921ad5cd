"""The JCS v1 REST API (``spec/jcs-v1.md``)."""
