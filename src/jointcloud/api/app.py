"""Where ``create_app`` used to live: the JCS v1 app is ``api/jcs/app.py``
and the host that serves apps on listeners is ``api/host.py``. Kept for
callers not yet updated; new code imports ``jointcloud.api.jcs.app``."""

from __future__ import annotations

from jointcloud.api.jcs.app import create_app

__all__ = ["create_app"]
