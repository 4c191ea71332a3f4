"""~/query and ~/query_text: admission, two bounded lanes, answers and their RViz outputs.

Every ~/query request is served or refused with a reason, never dropped: the middleware holds
up to ``node.service_queue_depth`` requests, each executor thread hands one to a lane
(requests.py) and waits for it, and the lane's worker answers all that wait together as one
batch (identical requests computed once). Answers without masks (3D only, milliseconds) and
answers with masks (a render per request) have separate lanes, so cheap queries do not wait
behind expensive ones. Answers without masks are kept for the field they came from (the last
``ANSWER_CACHE`` distinct requests), so a robot repeating a question costs no recomputation; a
repeated request is answered on its executor thread without a turn in the lane.
RViz outputs (~/query/cloud, ~/query/markers) show the newest answer at most every
``node.query_viz_period`` seconds: a burst publishes its last answer, not one per request.
Limits: ``node.query_queue_limit``, ``node.mask_queue_limit``, ``node.query_max_wait``.

(The service callback blocks its executor thread instead of awaiting a future: rclpy's
executor resumes every pending coroutine on every wake-up, which made a burst of 300 requests
cost seconds of scheduling.)
"""
from __future__ import annotations

import threading
import time
import traceback
import weakref
from collections import OrderedDict
from dataclasses import dataclass
from typing import Callable

import numpy as np
from rclpy.node import Node
from sensor_msgs.msg import Image, PointCloud2
from std_msgs.msg import Header, String
from visualization_msgs.msg import MarkerArray

from langx_interfaces.srv import QueryObjects
from langx_ros.core.engine import Camera, Engine
from langx_ros.core.query import QueryRequestError, prepare_queries
from langx_ros.ros.answers import object_match, rviz_outputs
from langx_ros.ros.params import NodeConfig
from langx_ros.ros.requests import Job, Lane, Refused
from langx_ros.ros.throttle import LatestOnly


ANSWER_CACHE = 256


@dataclass(frozen=True)
class QueryKey:
    """One ~/query request as the lanes see it (identical keys are answered once)."""

    queries: tuple[str, ...]
    threshold: float
    view: str
    masks: bool
    all_instances: bool


@dataclass
class QueryAnswer:
    matches: list  # ObjectMatch
    provenance: str
    rviz: tuple = ()  # (cloud, markers) as published, re-published (restamped) when the answer is reused


class QueryServer:
    """Serves ``~/query`` (and ``~/query_text``) for ``node``.

    ``field_or_error()`` returns the field to answer from or raises QueryRequestError (no field
    yet, reconstructing); ``view(name)`` returns (camera, header, rgb) for a view name or raises
    QueryRequestError; ``latest_has_pose()`` says whether 'latest' can be rendered;
    ``provenance()`` what a refused request's answer says about the models; ``limits``: the node
    settings with the lanes' limits (node.query_queue_limit, mask_queue_limit, query_max_wait).
    """

    def __init__(self, node: Node, engine: Engine, field_or_error: Callable[[], object],
                 view: Callable[[str], tuple[Camera, Header, np.ndarray]], latest_has_pose: Callable[[], bool],
                 world_header: Callable[[], Header], provenance: Callable[[], str], warn: Callable[[str, str], None],
                 limits: NodeConfig, qos, callback_group):
        self.node = node
        self.engine = engine
        self._field_or_error = field_or_error
        self._view = view
        self._latest_has_pose = latest_has_pose
        self._world_header = world_header
        self._provenance = provenance
        self._warn = warn
        self.last_latency_ms = -1.0
        self._cache: OrderedDict[QueryKey, QueryAnswer] = OrderedDict()  # answers without masks, of _cache_field
        self._cache_field = lambda: None
        self._cache_lock = threading.Lock()
        self.lanes = {
            "query": Lane("query", self._serve, limits.query_queue_limit, limits.query_max_wait),
            "masks": Lane("mask query", self._serve, limits.mask_queue_limit, limits.query_max_wait),
        }
        self._q_cloud = node.create_publisher(PointCloud2, "~/query/cloud", 10)
        self._q_markers = node.create_publisher(MarkerArray, "~/query/markers", 10)
        self._q_mask = node.create_publisher(Image, "~/query/mask", 10)
        self._q_rel = node.create_publisher(Image, "~/query/relevancy", 10)
        self._viz = LatestOnly(self._publish_viz, limits.query_viz_period)
        node.create_service(QueryObjects, "~/query", self._on_query, qos_profile=qos, callback_group=callback_group)
        node.create_subscription(String, "~/query_text", self._on_query_text, 10, callback_group=callback_group)

    def close(self) -> None:
        for lane in self.lanes.values():
            lane.close()

    def stats(self) -> dict[str, str]:
        """Per lane: queued now, served, refused (busy / waited too long), failed, largest batch."""
        out = {}
        for name, lane in self.lanes.items():
            s = lane.stats
            out[f"{name} lane"] = (f"{lane.queued()} queued (limit {lane.limit}), {s.served} served, {s.refused_busy} refused busy, "
                                   f"{s.refused_wait} refused after waiting > {lane.max_wait:g} s, {s.failed} failed, "
                                   f"largest batch {s.largest_batch}")
        return out

    # ---- answering (lane workers) -------------------------------------------------------------
    def _serve(self, keys: list[QueryKey]) -> list:
        """One QueryAnswer, or the exception for the caller, per distinct request."""
        out: list = []
        for key in keys:
            try:
                out.append(self._answer(key))
            except QueryRequestError as exc:
                out.append(exc)
            except Exception as exc:  # never let a query take the node down
                self.node.get_logger().error("query failed:\n" + traceback.format_exc())
                out.append(RuntimeError(f"internal error: {type(exc).__name__}: {exc}"))
        return out

    def _answer(self, key: QueryKey) -> QueryAnswer:
        """Answers and RViz outputs; raises QueryRequestError for the caller."""
        queries = list(key.queries)
        prepare_queries(queries, key.threshold, self.engine.cfg.query)
        field_ = self._field_or_error()
        if not key.masks:
            hit = self._cached(key, field_)
            if hit is not None:
                return hit
        camera, view_header, view_rgb = self._view(key.view) if key.masks else (None, None, None)
        answers = self.engine.answer(field_, queries, key.threshold, camera, key.masks, key.all_instances)
        world = self._world_header()
        msgs = [object_match(a, world, view_header) for a in answers]
        cloud, markers, mask, rel = rviz_outputs(answers, world, view_header, view_rgb)
        self._viz.offer(((cloud, markers), False))
        if mask is not None:
            self._q_mask.publish(mask)
            self._q_rel.publish(rel)
        answer = QueryAnswer(msgs, field_.provenance_text(), (cloud, markers))
        if not key.masks:
            with self._cache_lock:
                if self._cache_field() is field_:
                    self._cache[key] = answer
                    while len(self._cache) > ANSWER_CACHE:
                        self._cache.popitem(last=False)
        return answer

    def _cached(self, key: QueryKey, field_) -> QueryAnswer | None:
        """The stored answer to ``key`` from ``field_`` (None if there is none; a new field
        empties the store). A hit is shown in RViz like a fresh answer (restamped)."""
        with self._cache_lock:
            if self._cache_field() is not field_:
                self._cache.clear()
                self._cache_field = weakref.ref(field_)
            hit = self._cache.get(key)
            if hit is not None:
                self._cache.move_to_end(key)
        if hit is not None:
            self._viz.offer((hit.rviz, True))
        return hit

    def _publish_viz(self, item: tuple) -> None:
        """Publish one answer's (cloud, markers) on ~/query/cloud and ~/query/markers; a reused
        answer is restamped (now) first. Runs on the answering thread or the LatestOnly timer."""
        (cloud, markers), reused = item
        if reused:
            stamp = self._world_header().stamp
            for h in [cloud.header, *(m.header for m in markers.markers)]:
                h.stamp = stamp
        self._q_cloud.publish(cloud)
        self._q_markers.publish(markers)

    # ---- callbacks ----------------------------------------------------------------------------
    def _on_query(self, request: QueryObjects.Request, response: QueryObjects.Response) -> QueryObjects.Response:
        t0 = time.perf_counter()
        response.provenance = self._provenance()
        masks = bool(request.return_masks)
        key = QueryKey(tuple(request.queries), float(request.threshold), request.view if masks else "", masks,
                       bool(request.all_instances))  # without masks the view plays no part
        lane = self.lanes["masks" if key.masks else "query"]
        done = threading.Event()
        try:
            answer = self._cached_now(key)
            if answer is None:
                job = lane.submit(key, key, lambda _job: done.set())
                if not done.wait(lane.max_wait + 600.0):  # a request is refused after max_wait; this guards a hung worker
                    raise RuntimeError(f"internal error: no answer from the {lane.name} worker")
                if job.error is not None:
                    raise job.error
                answer = job.result
            response.success, response.matches, response.provenance = True, answer.matches, answer.provenance
            found = sum(m.found and m.instance_rank == 0 for m in answer.matches)
            response.message = f"{found} of {len(key.queries)} queries matched" + (
                f" ({sum(m.found for m in answer.matches)} instances)" if key.all_instances else "")
        except (Refused, QueryRequestError, RuntimeError) as exc:
            response.success, response.message = False, str(exc)
        response.latency_ms = (time.perf_counter() - t0) * 1000.0
        if response.success:
            self.last_latency_ms = response.latency_ms
        return response

    def _cached_now(self, key: QueryKey) -> QueryAnswer | None:
        """A stored answer served on the calling thread, without a turn in the lane (a repeated
        question costs a dictionary look-up, not two thread hand-offs); None = ask the lane."""
        if key.masks:
            return None
        try:
            field_ = self._field_or_error()
        except QueryRequestError:
            return None  # the lane gives the reason
        answer = self._cached(key, field_)
        if answer is not None:
            self.lanes["query"].count_served_elsewhere()
        return answer

    def _on_query_text(self, msg: String) -> None:
        key = QueryKey((msg.data,), 0.0, "latest", self._latest_has_pose(), False)

        def report(job: Job) -> None:
            if job.error is not None:
                self._warn("query_text", str(job.error))
            else:
                self.node.get_logger().info("query_text: " + "; ".join(f"'{m.query}': {m.message}" for m in job.result.matches))

        try:
            self.lanes["masks" if key.masks else "query"].submit(key, key, report)
        except Refused as exc:
            self._warn("query_text", str(exc))
