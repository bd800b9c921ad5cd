"""Storage backends (user spaces) behind one ``Space`` protocol."""
