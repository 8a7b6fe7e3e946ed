"""Sensors of the tdtp code location: the part-arrival sensor."""

from sensors.part_arrival import SENSOR_NAME, Cursor, build_part_arrival_sensor, seq_ranges

__all__ = ["SENSOR_NAME", "Cursor", "build_part_arrival_sensor", "seq_ranges"]
