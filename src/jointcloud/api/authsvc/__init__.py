"""The auth service (``/v1/access``): access grants in, S3 credentials out."""
