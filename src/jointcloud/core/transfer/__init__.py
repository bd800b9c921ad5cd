"""Transfer tasks: sync between user spaces, import into and export out of
packages (rules in docs/sync.md).

- ``spec``: validation of requests (paths, filters, triggers, modes);
- ``trees``: the two ends of a transfer (a tree in a user space, a package);
- ``engine``: one run of a task (plan, copy in parallel with retries, record);
- ``runner``: which tasks run when (leases, progress saving, windows, cancel);
- ``service``: tasks as the user sees them (create, get, list, cancel).
"""

from jointcloud.core.transfer.runner import TaskRunner
from jointcloud.core.transfer.service import TaskView, TransferService

__all__ = ["TaskRunner", "TaskView", "TransferService"]
