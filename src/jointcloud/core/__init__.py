"""Domain services. No web framework, no wire formats, no HTTP status codes."""
