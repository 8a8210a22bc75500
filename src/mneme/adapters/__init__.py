"""Metrics hooks for monitoring systems."""
