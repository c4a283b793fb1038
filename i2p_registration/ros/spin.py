"""Run one node in the foreground: the body of every node's ``main``."""

import sys
from typing import Callable

import rclpy
from rclpy.executors import ExternalShutdownException
from rclpy.node import Node

# The executor and a node's worker thread share the GIL: Python hands it over every switch
# interval (5 ms by default), which delayed each result by about two intervals; 0.5 ms bounds that.
GIL_SWITCH_INTERVAL_S = 0.0005


def run_node(make_node: Callable[[], Node], node_name: str, args=None) -> int:
    """
    Initialize rclpy, spin the node ``make_node`` builds until Ctrl-C or shutdown, clean up.

    :param make_node: builds the node; a ``ValueError`` from it (invalid parameters) is logged.
    :param node_name: the name to log a start-up failure under.
    :param args: ROS command-line arguments (default: ``sys.argv``).
    :return: 0 on a clean shutdown, 1 when the node could not start.
    """
    sys.setswitchinterval(GIL_SWITCH_INTERVAL_S)
    rclpy.init(args=args)
    node = None
    code = 0
    try:
        node = make_node()
        rclpy.spin(node)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except ValueError as error:
        rclpy.logging.get_logger(node_name).error(f'cannot start: {error}')
        code = 1
    finally:
        if node is not None:
            node.destroy_node()
        rclpy.try_shutdown()
    return code
