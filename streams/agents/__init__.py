"""The worker's Faust agents and timers, a module per domain; each ``install(worker, ...)``
adds its own to ``worker.app``."""
