"""OpenWhisk entry point: the runtime imports this file (as main__.py) and calls main(args)."""

from backup.action import main

__all__ = ["main"]
