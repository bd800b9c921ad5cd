"""Data plane: segmenting, hashing, encryption, replication and erasure coding."""
