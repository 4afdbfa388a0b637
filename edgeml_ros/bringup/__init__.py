"""Bring-up helpers for hosts without `ros2 launch`: node processes and the demo runner."""
