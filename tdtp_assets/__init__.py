"""The tdtp Dagster code location: assets, checks, jobs and schedules built from the tables file.

``tdtp_assets.definitions`` holds ``defs``; the engine (``tdtp``) never imports this package.
"""
