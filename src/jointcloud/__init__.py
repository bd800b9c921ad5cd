"""JointCloud: one object store over the storage a user already owns."""

__version__ = "0.1.0"
