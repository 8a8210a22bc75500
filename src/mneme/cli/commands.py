"""Importing this module registers every subcommand on the ``mneme`` group."""

from mneme.cli import bench, calibrate, doctor, stats, transfer, upgrade

__all__ = ["bench", "calibrate", "doctor", "stats", "transfer", "upgrade"]
