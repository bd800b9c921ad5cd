"""Link sharing: share pages, raw bytes, listings and zips behind share URLs
(``app.create_app``; ``app.handles`` says which paths are its own)."""
