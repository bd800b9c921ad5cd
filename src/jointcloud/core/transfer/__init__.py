"""Transfer tasks: sync between user spaces, import into and export out of
packages (rules in docs/sync.md).

- ``spec``: validation of requests (paths, filters, triggers, modes);
- ``trees``: the two ends of a transfer (a tree in a user space, a package);
- ``engine``: one run of a task (plan, copy in parallel with retries, record);
- ``runner``: which tasks run when (leases, progress saving, windows, cancel);
- ``service``: tasks as the user sees them (create, get, list, cancel).

Import from the modules themselves: this package imports nothing, so that
the user-space service can read a stored task's spaces (``tasks``) while
the runner, above it, uses that service.
"""
