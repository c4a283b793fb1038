"""
Publish transforms on ``/tf`` and ``/tf_static`` with or without ``tf2_ros``.

Where ``tf2_ros`` is installed its broadcasters are used. Otherwise the same
``tf2_msgs/TFMessage`` is published directly with the QoS ``tf2_ros`` uses: ``/tf`` reliable,
volatile, depth 100; ``/tf_static`` reliable, transient local, depth 1, every static transform
sent so far republished in one message (latest per child frame), as
``StaticTransformBroadcaster`` does. Listeners cannot tell the two apart.
"""

from __future__ import annotations

from typing import Iterable

from geometry_msgs.msg import TransformStamped
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from tf2_msgs.msg import TFMessage

try:
    from tf2_ros import StaticTransformBroadcaster, TransformBroadcaster
except ImportError:  # tf2_ros is not on PyPI: publish the messages ourselves
    StaticTransformBroadcaster = TransformBroadcaster = None

TF_QOS = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE,
                    durability=DurabilityPolicy.VOLATILE, history=HistoryPolicy.KEEP_LAST)
TF_STATIC_QOS = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                           durability=DurabilityPolicy.TRANSIENT_LOCAL,
                           history=HistoryPolicy.KEEP_LAST)


class TransformPublisher:
    """
    Dynamic and static transform broadcasting for one node.

    :param node: the publishing node.
    :param use_tf2_ros: use ``tf2_ros`` broadcasters when importable (default); False forces the
        direct publishers.
    """

    def __init__(self, node: Node, use_tf2_ros: bool = True):
        self.uses_tf2_ros = bool(use_tf2_ros and TransformBroadcaster is not None)
        self._node = node
        self._static: dict[str, TransformStamped] = {}
        if self.uses_tf2_ros:
            self._broadcaster = TransformBroadcaster(node)
            self._static_broadcaster = StaticTransformBroadcaster(node)
        else:
            self._tf = node.create_publisher(TFMessage, '/tf', TF_QOS)
            self._tf_static = node.create_publisher(TFMessage, '/tf_static', TF_STATIC_QOS)

    def send(self, transforms: Iterable[TransformStamped]) -> None:
        """Publish dynamic transforms on ``/tf``."""
        transforms = list(transforms)
        if self.uses_tf2_ros:
            self._broadcaster.sendTransform(transforms)
        else:
            self._tf.publish(TFMessage(transforms=transforms))

    def send_static(self, transforms: Iterable[TransformStamped]) -> None:
        """Publish static transforms on ``/tf_static`` (latched, latest per child frame)."""
        transforms = list(transforms)
        if self.uses_tf2_ros:
            self._static_broadcaster.sendTransform(transforms)
            return
        for transform in transforms:
            self._static[transform.child_frame_id] = transform
        self._tf_static.publish(TFMessage(transforms=list(self._static.values())))
