"""Offline tools: threshold calibration and re-embedding."""
