"""ROS 2 nodes: they wire topics, parameters and timers to the ROS-free core."""
