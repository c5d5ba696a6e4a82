"""ROS 2 layer of policy_xai: thin rclpy adapters over the core.

interfaces.py declares every topic, type, QoS and parameter default once; convert.py turns numpy
arrays into messages and back; graph.py declares the node graph used by the launch files and by
runner.py (the process runner); the *_node.py modules are the nodes. Importing this package does
not import rclpy.
"""
