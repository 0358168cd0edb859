"""The command line: one module per command group, assembled in :mod:`tasksift.cli.app`."""

from tasksift.cli.app import app, main

__all__ = ["app", "main"]
