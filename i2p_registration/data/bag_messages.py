"""
Messages read from a rosbag2 by ``rosbags`` -> the numpy types of ``core``, without ROS.

``rosbags`` deserializes CDR into plain Python objects with the field names of rclpy's messages
(``msg.header.stamp.sec``, ``msg.fields``, ``msg.data`` as a uint8 numpy array...), so the bag
tools read them with the node's own parsing, :mod:`i2p_registration.ros.message_parsing` (which
imports no ROS); this module adds the message type names and the ``/tf_static`` chain.
"""

from __future__ import annotations

from i2p_registration.ros.message_parsing import (camera_info_to_model,  # noqa: F401
                                                  cloud_to_frame, image_to_frame,
                                                  image_to_numpy, stamp_to_ns,
                                                  transform_to_matrix)
import numpy as np

IMAGE_TYPE = 'sensor_msgs/msg/Image'
COMPRESSED_TYPE = 'sensor_msgs/msg/CompressedImage'
CAMERA_INFO_TYPE = 'sensor_msgs/msg/CameraInfo'
CLOUD_TYPE = 'sensor_msgs/msg/PointCloud2'
TF_TYPE = 'tf2_msgs/msg/TFMessage'


def static_transforms(messages) -> dict[tuple[str, str], np.ndarray]:
    """
    Collect the transforms of ``tf2_msgs/TFMessage`` messages as ``{(parent, child): T}``.

    Later messages replace earlier ones for the same frame pair.
    """
    out = {}
    for msg in messages:
        for tf in msg.transforms:
            out[(tf.header.frame_id, tf.child_frame_id)] = transform_to_matrix(tf)
    return out


def chain(transforms: dict[tuple[str, str], np.ndarray], parent: str, child: str) -> np.ndarray:
    """
    Return ``T_parent_child`` through a tree of transforms (``{(parent, child): T}``).

    :raises ValueError: when the two frames are not connected.
    """
    edges = {}
    for (a, b), T in transforms.items():
        edges.setdefault(a, []).append((b, T))
        edges.setdefault(b, []).append((a, np.linalg.inv(T)))
    stack, seen = [(parent, np.eye(4))], {parent}
    while stack:
        frame, T = stack.pop()
        if frame == child:
            return T
        for nxt, T_step in edges.get(frame, []):
            if nxt not in seen:
                seen.add(nxt)
                stack.append((nxt, T @ T_step))
    raise ValueError(f'no transform chain from {parent!r} to {child!r} in '
                     f'{sorted(transforms)}')
