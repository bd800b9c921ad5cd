"""Key material: the server master key, API keys, secret sealing."""
