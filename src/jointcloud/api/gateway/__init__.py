"""The gateway facade of seed 003: JSON/XML calls over any S3 service."""
