"""The middleware floor for bench/reliability.py: a process with one ~/query service (node name
``langx_floor``) that answers every request at once with an empty success, spun by the same
executor as langx_node (its YieldingMultiThreadedExecutor with node.executor_threads threads) or, with
``--single``, a SingleThreadedExecutor. A burst against it measures what rclpy and the DDS
middleware cost on this machine with no work at all."""
from __future__ import annotations

import argparse

import rclpy
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.qos import QoSProfile

from langx_interfaces.srv import QueryObjects
from langx_ros.ros.node import YieldingMultiThreadedExecutor, spin_until_shutdown
from langx_ros.ros.params import NodeConfig


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--single", action="store_true")
    a, _ = ap.parse_known_args()  # NodeProcess appends --ros-args
    rclpy.init()
    node = Node("langx_floor")
    nc = NodeConfig()

    def answer(req: QueryObjects.Request, res: QueryObjects.Response) -> QueryObjects.Response:
        res.success, res.message = True, "floor"
        return res

    node.create_service(QueryObjects, "~/query", answer, qos_profile=QoSProfile(depth=nc.service_queue_depth))
    ex = SingleThreadedExecutor() if a.single else YieldingMultiThreadedExecutor(num_threads=nc.executor_threads)
    ex.add_node(node)
    spin_until_shutdown(ex, node.context)


if __name__ == "__main__":
    main()
