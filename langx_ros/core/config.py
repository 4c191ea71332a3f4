"""Configuration of langx_ros: typed dataclasses, built from one YAML file (config/langx.yaml).

The YAML file is a ROS 2 parameter file (``<node>: ros__parameters: {...}``) so that the node
loads it with ``--ros-args --params-file`` and a script loads the very same file with
:meth:`LangxConfig.from_yaml`. Nested sections become dotted ROS parameter names
(``query.threshold``). Every field carries its documentation (and bounds) in its metadata
(:mod:`langx_ros.core.config_fields`); the ROS layer declares its parameters from these and
config/langx.yaml is generated from them, so descriptions live in exactly one place.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

from langx_ros.core.config_fields import (  # noqa: F401  (re-exported)
    ConfigError,
    ParamSpec,
    flatten,
    from_flat,
    iter_params,
    param,
    read_parameter_file,
    to_flat,
)
from langx_ros.core.features import FeatureConfig
from langx_ros.core.field.registration import RegistrationConfig
from langx_ros.core.field.surface import SurfaceConfig
from langx_ros.core.field.train import FieldConfig
from langx_ros.core.keyframes import KeyframeConfig
from langx_ros.core.lqc import LQCConfig
from langx_ros.core.pose_refine import PoseRefineConfig
from langx_ros.core.reconstruct import ReconstructConfig
from langx_ros.core.segment import SegmentConfig
from langx_ros.core.trimap.interpolate import TriMapConfig


# --------------------------------------------------------------------------------------------
# The method's configuration (the ROS layer adds its own section, `node`, in langx_ros.ros).
# --------------------------------------------------------------------------------------------


@dataclass
class ModelsConfig:
    """Where model weights come from. Nothing is ever downloaded at run time."""

    model_dir: str = param(
        "~/.cache/langx_ros/models",
        "Folder with model weights (see README 'Model weights'). '~' expands to the user's home.",
    )
    hf_cache: str = param(
        "",
        "Hugging Face cache folder to search as well; empty = $HF_HUB_CACHE or "
        "~/.cache/huggingface/hub.",
    )
    clip_model: str = param("ViT-B-16", "open_clip architecture for image and text features.")
    allow_random_weights: bool = param(
        False,
        "When weights are missing, build the architectures with random weights instead of failing "
        "(for tests and plumbing checks only: every output then says 'random weights').",
    )


@dataclass
class SemanticsConfig:
    """Where the language features of a reconstruction come from."""

    source: str = param(
        "clip",
        "'clip': SAM2 segments + open_clip features (weights from models.model_dir); 'oracle': the "
        "oracle-feature protocol for generated scenes (instance ids from the 'instances' topic, label "
        "names below embedded by all-MiniLM-L6-v2): measures lifting and querying, not CLIP.",
        choices=("clip", "oracle"),
    )
    labels: list[str] = param([], "Oracle protocol: the label of each instance id (index = id).")


@dataclass
class QueryConfig:
    """Text queries against a field (LangSplat protocol)."""

    threshold: float = param(
        0.5, "Relevancy threshold used when a request gives threshold <= 0.", min=1e-6, max=1.0
    )
    max_queries: int = param(64, "Most queries accepted in one ~/query call.", min=1, max=10000)
    max_query_chars: int = param(
        256, "Longest accepted query text (characters, after trimming).", min=1, max=100000
    )
    canonical_phrases: list[str] = param(
        ["object", "things", "stuff", "texture"],
        "Canonical phrases of the relevancy score (LangSplat).",
    )
    relative_cutoff: float = param(
        0.7,
        "3D selection keeps Gaussians with relevancy >= min + cutoff * (max - min) (LangSplat's "
        "2D rule clip(2n - 1) > 0.4, applied over the Gaussians) and >= the threshold.",
        min=0.0, max=1.0,
    )
    min_opacity: float = param(
        0.02, "Gaussians below this opacity are never selected. Far, textureless surfaces are drawn by many faint "
        "Gaussians: 0.1 -> 0.02 took the real lounge's whiteboard (3.5 m away) from recall 0.62 to 0.75 and its precision "
        "0.85 -> 0.88, the kitchen's worst surface-centroid error 6.2 -> 3.0 cm, the generated scene's recalls 0.45-0.65 -> "
        "0.49-0.74 (precision 1.00 both); unobserved Gaussians stay excluded whatever their opacity.",
        min=0.0, max=1.0,
    )
    cluster_radius: float = param(
        0.0, "Edge (m) of the voxels whose touching links selected Gaussians into one instance; 0 = automatic: "
        "3 x the median spacing of the Gaussians, at least min_cluster_radius.", min=0.0, max=100.0
    )
    min_cluster_radius: float = param(
        0.06, "Lower bound (m) of the automatic cluster_radius: a real field's selection has holes where Gaussians "
        "were not observed, and a radius from the densest spacing splits one object into many pieces (far, sparsely "
        "seen objects most: 0.04 -> 0.06 took the lounge's whiteboard from 8 pieces to 3 and its recall 0.53 -> 0.62). "
        "Same-label objects closer than this always merge.", min=0.0, max=100.0
    )
    instance_match_weight: float = param(
        1.0, "Instances are ranked by evidence x exp(w x their evidence-weighted mean relevancy logit), i.e. by "
        "evidence times the odds of their relevancy for w = 1: a 'white mug' query answers the white mug before a "
        "larger floral mug that also passes the cutoff (both names embed alike), while a large well-seen object still "
        "beats a few barely seen Gaussians of somewhat higher relevancy. 0 = by evidence alone.",
        min=0.0, max=100.0,
    )
    instance_density_weight: float = param(
        0.0, "Exponent d of the evidence per Gaussian in the instance rank (evidence x (evidence / Gaussians)^d x odds): "
        "a region mislabelled in one or two views is seen by few agreeing views and has little evidence per Gaussian. "
        "0 = off.", min=0.0, max=10.0,
    )
    instance_consensus_weight: float = param(
        0.0, "Exponent c of the instance's consensus in the rank (x consensus^c): the share of the labelled blending "
        "weight behind its Gaussians that agrees with their label, over all views that see them (a region that two "
        "views mislabel and others see right has a low one). Needs a field registered with it; 0 = off.",
        min=0.0, max=10.0,
    )
    instance_views_weight: float = param(
        2.0, "Exponent v of the instance's agreeing views in the rank (x views^v): the evidence-weighted mean number "
        "of views whose labels agree at its Gaussians, so a region that one or two views mislabel ranks below the "
        "object many views agree on (noisy kitchen, two H100 runs: wrong answers 2 -> 0 and 1 -> 0 at v = 2; v = 1 "
        "did less; no change on the clean lounge, kitchen and shelf). Needs a field registered with it; 0 = off.",
        min=0.0, max=10.0,
    )
    min_instance_points: int = param(5, "Smaller groups of selected Gaussians are discarded as noise.", min=1, max=1_000_000)
    max_instances: int = param(16, "Most instances offered per query (the best by evidence first; ~/query all_instances returns them all).", min=1, max=10_000)
    cuda_graph: bool = param(
        True, "On CUDA, answer 3D queries by replaying a captured CUDA graph of the fixed-shape selection, instance "
        "and point pipeline (one launch instead of ~140, one wait per call). false = run its kernels one by one "
        "(same answers; for debugging). A failed capture logs a warning and answers the same way.",
    )
    points: str = param(
        "surface",
        "What an answer's points are: 'surface' (the key frames' depth points its Gaussians own, core/field/surface.py: "
        "measured surface, evenly sampled, with the camera's colours; an instance owning none, or a field without "
        "samples, answers with centres and says so) or 'centres' (its Gaussians' centres). Real lounge, H200 field: the "
        "far whiteboard's precision / recall / centroid error 0.89 / 0.74 / 13 cm with centres, 0.99 / 0.97 / 2.6 cm "
        "with surface samples; every lounge and kitchen object within 4.2 cm.",
        choices=("surface", "centres"),
    )
    max_points: int = param(200_000, "Most points returned per match (a uniform subsample beyond).", min=1, max=100_000_000)
    sample_vote: bool = param(
        True, "Surface points are labelled by the views that see them (the registration's cross-view vote, per "
        "measured point); an answer drops its Gaussians' points whose own label does not pass the query's cut, so a "
        "Gaussian fitted to one view's mislabelled pixels does not bring in points the other views see as something "
        "else. Points no view labels are kept (see unlabelled_points). false = every point of the answer's Gaussians.",
    )
    unlabelled_points: bool = param(
        False, "With sample_vote: keep the answer's points that no view labels (seen only where a view has no "
        "segment, e.g. only where the sensor has no depth and the field's rendered depth stands in). false = drop "
        "them too, unless the answer has no labelled point that passes. H200, one field per scene, clean and 3 noisy "
        "label draws: the lounge's potted plant precision 0.94 -> 1.00 and centroid error 9.0 -> 2.3 cm (clean), the "
        "lounge's worst precision 0.90-0.94 -> 0.95-0.99 and worst centroid error 8.2-9.5 -> 5.4-8.6 cm, the kitchen's "
        "worst precision 0.84-0.98 -> 0.99-1.00; recall fell by at most 0.11 (a noisy lounge side table 0.85 -> "
        "0.74); the shelf and the generated scene, whose views label every pixel, unchanged.",
    )
    relevancy_2d: str = param(
        "gaussians",
        "How 2D relevancy maps are rendered: 'gaussians' (each observed Gaussian's own relevancy is blended; unobserved "
        "Gaussians do not count) or 'codes' (LangScene-X / LangSplat: the Gaussians' codes are blended and each pixel's "
        "blend decoded by its nearest codebook entry; where two labels' Gaussians overlap, the blend can decode to a "
        "third label). Held-out 2D mIoU (LangSplat protocol), one H200, same fields, codes -> gaussians: real lounge "
        "0.49 -> 0.62 (noisy labels, 3 seeds: 0.35-0.43 -> 0.41-0.49), kitchen 0.68 -> 0.69 (noisy 0.58-0.62 -> "
        "0.60-0.67), generated scene 0.99 -> 0.99 (noisy 0.78-0.94 -> 0.85-0.96), shelf 0.80 -> 0.78 (noisy 0.67-0.76 "
        "-> 0.69-0.75).",
        choices=("codes", "gaussians"),
    )
    mask_box_px: int = param(
        30,
        "Mean filter size (px) of the 2D relevancy smoothing: cv2.filter2D, reflect-101 border, anchor at "
        "size // 2 (LangSplat's evaluation: 30).",
        min=1, max=1001,
    )
    mask_threshold: float = param(0.4, "2D mask threshold on clip(2n - 1) of the normalised map (LangSplat).", min=0.0, max=1.0)
    mask_clean_px: int = param(
        7,
        "Majority vote window (px) that cleans the 2D mask: a pixel is kept when more than half of its "
        "(2 * (size // 2) + 1)^2 window is set, the window clipped at the image and, as in LangSplat's "
        "evaluation, short of its last row and column (LangSplat: 7).",
        min=1, max=101,
    )


@dataclass
class LangxConfig:
    """Everything the method needs; one section per stage."""

    device: str = param(
        "auto", "Compute device: 'auto' (CUDA when available, else CPU), 'cpu', 'cuda' or 'cuda:N'."
    )
    models: ModelsConfig = dataclasses.field(default_factory=ModelsConfig)
    semantics: SemanticsConfig = dataclasses.field(default_factory=SemanticsConfig)
    keyframes: KeyframeConfig = dataclasses.field(default_factory=KeyframeConfig)
    segment: SegmentConfig = dataclasses.field(default_factory=SegmentConfig)
    features: FeatureConfig = dataclasses.field(default_factory=FeatureConfig)
    lqc: LQCConfig = dataclasses.field(default_factory=LQCConfig)
    field: FieldConfig = dataclasses.field(default_factory=FieldConfig)
    registration: RegistrationConfig = dataclasses.field(default_factory=RegistrationConfig)
    surface: SurfaceConfig = dataclasses.field(default_factory=SurfaceConfig)
    pose_refine: PoseRefineConfig = dataclasses.field(default_factory=PoseRefineConfig)
    reconstruct: ReconstructConfig = dataclasses.field(default_factory=ReconstructConfig)
    trimap: TriMapConfig = dataclasses.field(default_factory=TriMapConfig)
    query: QueryConfig = dataclasses.field(default_factory=QueryConfig)

    @classmethod
    def from_yaml(cls, path: str | Path, node_name: str = "langx_node") -> "LangxConfig":
        """Load from the node's parameter file; the ROS layer's ``node.*`` section is skipped."""
        values = {k: v for k, v in read_parameter_file(path, node_name).items() if not k.startswith("node.")}
        return from_flat(cls, values)

