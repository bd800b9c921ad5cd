"""The names of the background jobs, importable without the server's modules
(the CLI builds one ``jcs admin <job>`` command per name at start-up)."""

JOB_NAMES = ("gc", "repair", "scrub", "health", "drain", "recode", "sync")
