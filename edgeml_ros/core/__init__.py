"""ROS-free core of edgeml_ros: data, models, runtime, codec, checkpoints and the frame pipeline.

Nothing in this package imports rclpy, so it installs and tests on machines without ROS.
"""
