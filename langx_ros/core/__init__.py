"""The method as a plain Python library: no rclpy or message imports anywhere below here."""
