"""Monitoring: series and samples, thresholds, collectors, heartbeats.

Other apps record metrics through :func:`monitoring.storage.record` only.
"""
