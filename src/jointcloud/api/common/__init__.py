"""HTTP code every protocol app shares (request ids and metrics; later
ranges, conditional headers, streaming and form data)."""
