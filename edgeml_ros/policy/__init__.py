"""ROS-free execution policies: choose the cut point and exit thresholds from the conditions."""
