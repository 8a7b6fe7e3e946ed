"""The tdtp Dagster code location: assets, checks, jobs and schedules built from the tables file.

``tdtp_location.definitions`` assembles them into ``defs``; this package never imports
``sensors`` or ``tdtp_location``, and the engine (``tdtp``) never imports this package.
"""
