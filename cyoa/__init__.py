"""The launcher: settings, the ``cyoa`` command line, and the wiring of concrete parts."""

from __future__ import annotations

__version__ = "0.1.0"
