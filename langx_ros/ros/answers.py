"""Engine answers -> ROS messages (ObjectMatch, clouds, masks, relevancy images, markers)."""
from __future__ import annotations

import numpy as np
from std_msgs.msg import Header

from langx_interfaces.msg import ObjectMatch
from langx_ros.core.engine import Answer
from langx_ros.ros.convert import cloud_to_msg, match_markers, numpy_to_image


def object_match(a: Answer, world_header: Header, view_header: Header | None) -> ObjectMatch:
    """One ObjectMatch: cloud in the world frame; mask only for found matches with a view."""
    m = a.match
    msg = ObjectMatch()
    msg.query = m.query
    msg.label = m.query
    msg.found = bool(m.found)
    msg.score = float(m.score)
    msg.threshold = float(m.threshold)
    msg.num_instances = int(m.num_instances)
    msg.instance_rank = int(m.rank)
    msg.evidence = float(m.evidence)
    msg.cloud = cloud_to_msg(m.points, m.colors, m.relevancy, world_header, m.normals if len(m.normals) == len(m.points) else None)
    c = m.centroid
    msg.centroid.x, msg.centroid.y, msg.centroid.z = (float(v) for v in c)
    center, size = m.box
    msg.box_center.x, msg.box_center.y, msg.box_center.z = (float(v) for v in center)
    msg.box_size.x, msg.box_size.y, msg.box_size.z = (float(v) for v in size)
    obb = m.oriented_box
    msg.obb_pose.position.x, msg.obb_pose.position.y, msg.obb_pose.position.z = (float(v) for v in obb.center)
    q = msg.obb_pose.orientation
    q.x, q.y, q.z, q.w = (float(v) for v in obb.quaternion_xyzw())
    msg.obb_size.x, msg.obb_size.y, msg.obb_size.z = (float(v) for v in obb.size)
    if m.found and a.mask is not None and view_header is not None:
        msg.mask = numpy_to_image(a.mask.astype(np.uint8) * 255, "mono8", view_header)
    msg.message = m.message
    return msg


def relevancy_image(rel: np.ndarray, base_rgb: np.ndarray | None = None) -> np.ndarray:
    """A colour-mapped (turbo) relevancy map, blended over the view's image when given; (H, W, 3) uint8 RGB."""
    import cv2

    r = rel.astype(np.float32)
    lo, hi = float(r.min()), float(r.max())
    n = ((r - lo) / (hi - lo + 1e-9) * 255).astype(np.uint8)
    col = cv2.applyColorMap(n, cv2.COLORMAP_TURBO)[:, :, ::-1]
    if base_rgb is not None and base_rgb.shape[:2] == rel.shape:
        col = (0.55 * col + 0.45 * base_rgb).astype(np.uint8)
    return np.ascontiguousarray(col)


def rviz_outputs(answers: list[Answer], world_header: Header, view_header: Header | None, view_rgb: np.ndarray | None):
    """(merged cloud, markers, union mask image or None, relevancy image or None) for RViz."""
    found = [a for a in answers if a.match.found]
    pts = np.concatenate([a.match.points for a in found]) if found else np.zeros((0, 3), np.float32)
    cols = np.concatenate([a.match.colors for a in found]) if found else np.zeros((0, 3), np.uint8)
    rel = np.concatenate([a.match.relevancy for a in found]) if found else np.zeros(0, np.float32)
    cloud = cloud_to_msg(pts, cols, rel, world_header)
    markers = match_markers([(a.match.query if a.match.rank == 0 else f"{a.match.query} #{a.match.rank + 1}", a.match.oriented_box,
                              a.match.score) for a in found], world_header)
    mask_img = rel_img = None
    views = [a for a in found if a.view is not None and a.mask is not None]
    if views and view_header is not None:
        union = np.zeros_like(views[0].mask)
        for a in views:
            union |= a.mask
        mask_img = numpy_to_image(union.astype(np.uint8) * 255, "mono8", view_header)
        rel_img = numpy_to_image(relevancy_image(views[0].view.relevancy, view_rgb), "rgb8", view_header)
    return cloud, markers, mask_img, rel_img
