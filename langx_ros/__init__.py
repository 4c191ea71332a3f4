"""langx_ros: language-embedded 3D surface fields (LangScene-X) for ROS 2.

``langx_ros.core`` is the method as a plain Python library (no ROS imports);
``langx_ros.ros`` is the thin ROS 2 layer (node, message conversions, parameters);
``langx_ros.cli`` holds the command-line entry points.
"""
__version__ = "0.1.0"
