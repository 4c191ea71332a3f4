"""Semantic registration: blending weights from the backward pass, surface support, observed marks."""
from __future__ import annotations

import numpy as np
import torch

from langx_ros.core.field.gaussians import init_from_points
from langx_ros.core.field.registration import (
    RegistrationConfig,
    RegistrationView,
    blend_weights,
    register,
    surface_support,
)
from langx_ros.core.field.render import rasterize
from langx_ros.core.field.train import activated
from langx_ros.core.frames import backproject
from langx_ros.core.synthetic import OracleTextEncoder, make_scene

K = torch.tensor([[50.0, 0, 16], [0, 50.0, 12], [0, 0, 1]])
EYE = torch.eye(4)


def _geom(means, opac, scale=0.05):
    n = len(means)
    return {"means": torch.tensor(means, dtype=torch.float32), "quats": torch.tensor([[1.0, 0, 0, 0]] * n),
            "scales": torch.full((n, 3), scale), "opacities": torch.tensor(opac, dtype=torch.float32)}


def test_weights_of_two_stacked_gaussians_are_front_alpha_and_transmitted_alpha():
    # both centred on pixel (16, 12)'s centre: alpha there = opacity (sigma = 0)
    x = (16.5 - 16) / 50.0
    y = (12.5 - 12) / 50.0
    g = _geom([[x * 1.0, y * 1.0, 1.0], [x * 2.0, y * 2.0, 2.0]], [0.5, 0.6])
    onehot = torch.zeros(24, 32, 1)
    onehot[12, 16] = 1.0
    w = blend_weights(g, onehot, EYE, K, 32, 24, backend="torch")[:, 0]
    assert torch.allclose(w, torch.tensor([0.5, 0.5 * 0.6]), atol=1e-4), w


def test_total_weights_sum_to_the_rendered_alpha():
    rng = np.random.default_rng(0)
    means = np.c_[rng.uniform(-0.3, 0.3, (40, 2)), rng.uniform(1.0, 2.0, 40)]
    g = _geom(means, rng.uniform(0.2, 0.9, 40).tolist(), 0.04)
    ones = torch.ones(24, 32, 1)
    w = blend_weights(g, ones, EYE, K, 32, 24, backend="torch")[:, 0]
    out = rasterize(g["means"], g["quats"], g["scales"], g["opacities"], torch.zeros(40, 1), EYE, K, 32, 24, backend="torch")
    assert abs(float(w.sum()) - float(out.alpha.sum())) < 1e-3 * float(out.alpha.sum())
    # a Gaussian behind the others at the same place gets less than when it is alone
    assert float(w.min()) >= 0.0


def test_surface_support_needs_matching_depth_inside_the_image():
    depth = torch.full((24, 32), 2.0)
    depth[0, 0] = float("nan")
    means = torch.tensor([[0.0, 0.0, 2.01], [0.0, 0.0, 1.5], [5.0, 0.0, 2.0], [-16 / 50 * 2.0 + 0.01, -12 / 50 * 2.0 + 0.01, 2.0],
                          [0.0, 0.0, -2.0]])
    sup = surface_support(means, EYE, K, depth, 0.03, 0.0)
    assert sup.tolist() == [True, False, False, False, False]  # on / in front / outside / no reading / behind


def _scene_and_views(width=48, height=36):
    scene = make_scene(4, width, height)
    enc = OracleTextEncoder(scene.labels, dim=16)
    feats = torch.as_tensor(enc.encode(scene.labels))
    views = []
    for f, ins in zip(scene.frames, scene.instances):
        seg = torch.as_tensor(np.where(ins >= 0, ins, -1))[None]
        views.append(RegistrationView(torch.tensor(np.linalg.inv(f.pose), dtype=torch.float32), torch.tensor(f.K, dtype=torch.float32),
                                      f.width, f.height, seg, [feats], torch.as_tensor(f.depth, dtype=torch.float32)))
    return scene, feats, views


def _surface(scene, stride=3):
    """Points, normals and labels of the surfaces the first two views see (every ``stride``-th)."""
    pts, nrm, lab = [], [], []
    for f, ins, nm in zip(scene.frames[:2], scene.instances[:2], scene.normals[:2]):
        p, _, pix = backproject(f, 1)
        pts.append(p)
        nrm.append(nm[pix[:, 0], pix[:, 1]])
        lab.append(ins[pix[:, 0], pix[:, 1]])
    pts, nrm, lab = np.concatenate(pts), np.concatenate(nrm), np.concatenate(lab)
    keep = lab >= 0
    return pts[keep][::stride], nrm[keep][::stride], lab[keep][::stride]


def _gaussians(points, normals):
    params = init_from_points(points.astype(np.float32), np.zeros((len(points), 3), np.uint8), normals.astype(np.float32), 3, 10**6,
                              flatness=0.3, initial_opacity=0.9)
    assert params["means"].shape[0] == len(points)
    with torch.no_grad():
        params["scales"] -= float(np.log(2))  # initial scales overlap heavily; trained surface Gaussians are tighter
    return params


def test_registration_labels_seen_gaussians_and_leaves_hidden_and_floating_ones_unobserved():
    scene, feats, views = _scene_and_views()
    surf, surf_nrm, surf_lab = _surface(scene)
    rng = np.random.default_rng(1)
    # floaters: between the first camera and the scene; hidden: 0.4 m under the floor
    cam = scene.frames[0].pose[:3, 3]
    floaters = cam + (surf[rng.choice(len(surf), 30)] - cam) * 0.5
    hidden = surf[surf_lab == 0][rng.choice(int((surf_lab == 0).sum()), 30)] - np.array([0, 0, 0.4])
    allp = np.concatenate([surf, floaters, hidden])
    alln = np.concatenate([surf_nrm, np.tile([[0.0, 0.0, 1.0]], (60, 1))])
    params = _gaussians(allp, alln)
    with torch.no_grad():
        params["scales"][len(surf):] = float(np.log(0.01))  # small floaters (isolated points would start large)
    cfg = RegistrationConfig(support_abs=0.05)
    reg = register(activated(params), views, 1, cfg, backend="torch")
    assert reg.dropped_segments == 0  # clean labels: the other views agree with every segment
    obs = reg.observed(cfg.min_weight)[:, 0].numpy()
    n = len(surf)
    assert obs[:n].mean() > 0.9, obs[:n].mean()
    assert obs[n:].sum() == 0, f"{obs[n:n + 30].sum()} floaters and {obs[n + 30:].sum()} hidden Gaussians marked observed"
    pred = (torch.nn.functional.normalize(reg.features[0][:n], dim=1) @ feats.T).argmax(1).numpy()
    acc = (pred[obs[:n]] == surf_lab[obs[:n]]).mean()
    assert acc > 0.95, acc
    # normals face the cameras that saw the Gaussians (the floor's normal points up)
    floor = (surf_lab == 0) & obs[:n]
    assert (reg.normals[:n][floor, 2] > 0.7).float().mean() > 0.9


def _floor_mislabelled_in_one_view():
    """The generated scene's surface Gaussians and views, view 0 calling the floor (label 0) by
    label 1's name, as a CLIP feature of a SAM segment may; and the floor Gaussians that view and
    at least two others see (bool (N,): their majority is the floor); and the registration without a vote."""
    scene, feats, views = _scene_and_views()
    surf, surf_nrm, surf_lab = _surface(scene)
    geom = activated(_gaussians(surf, surf_nrm))
    wrong = views[0].seg.clone()
    wrong[views[0].seg == 0] = 1
    views[0] = RegistrationView(views[0].viewmat, views[0].K, views[0].width, views[0].height, wrong, views[0].features, views[0].depth)
    sup0 = surface_support(geom["means"], views[0].viewmat, views[0].K, views[0].depth, 0.05, 0.02).numpy()
    plain = register(geom, views, 1, RegistrationConfig(support_abs=0.05, vote_rounds=0, segment_check=0), backend="torch")
    many = (surf_lab == 0) & sup0 & (plain.support_views.numpy() >= 3)
    return geom, feats, views, surf_lab, many, plain


def test_the_cross_view_vote_drops_a_segment_mislabelled_in_one_view():
    geom, feats, views, surf_lab, many, _ = _floor_mislabelled_in_one_view()
    results, regs = {}, {}
    for rounds in (0, 2):
        cfg = RegistrationConfig(support_abs=0.05, vote_rounds=rounds, segment_check=0)  # the vote alone
        reg = register(geom, views, 1, cfg, backend="torch")
        f = torch.nn.functional.normalize(reg.features[0], dim=1)
        own = (f * torch.nn.functional.normalize(feats, dim=1)[torch.as_tensor(surf_lab)]).sum(1)  # cos with its true label
        results[rounds] = own.numpy(), reg.evidence[:, 0].numpy()
        regs[rounds] = reg
    assert many.sum() > 20, many.sum()
    cos_mean, ev_mean = results[0]
    cos_vote, ev_vote = results[2]
    assert np.median(cos_mean[many]) < 0.95, np.median(cos_mean[many])  # the plain mean is pulled towards label 1
    assert np.median(cos_vote[many]) > 0.99, np.median(cos_vote[many])
    # the evidence left is the agreeing share: less than all of it, more than none
    ratio = ev_vote[many] / ev_mean[many]
    assert 0.2 < np.median(ratio) < 0.95, np.median(ratio)
    # Gaussians every view labels alike keep their feature and most of their evidence
    clean = (surf_lab >= 2) & (ev_mean > 0.1)
    assert clean.sum() > 20 and np.median(cos_vote[clean] - cos_mean[clean]) > -1e-3
    assert np.median(ev_vote[clean] / ev_mean[clean]) > 0.8  # (borders see two segments)
    # what a query's consensus and view terms read: the labelled weight is the plain mean's evidence,
    # agreeing or not; the mislabelling view no longer counts as agreeing, the others all do
    plain, voted = regs[0], regs[2]
    assert torch.allclose(voted.labelled, plain.evidence, rtol=1e-4, atol=1e-6)
    assert torch.equal(plain.agree_views, (plain.labelled > 0).float() * plain.agree_views.clamp(min=1))
    lost = (plain.agree_views[:, 0] - voted.agree_views[:, 0]).numpy()
    assert np.mean(lost[many] == 1) > 0.9, np.mean(lost[many] == 1)
    interior = clean & (cos_mean > 0.99)  # no view mixes in a neighbouring segment (borders do, at this resolution)
    assert interior.sum() > 20 and np.mean(lost[interior] == 0) > 0.9, np.mean(lost[interior] == 0)


def test_codes_of_gaussians_without_evidence_come_from_their_nearest_seen_neighbour():
    from langx_ros.core.field.registration import Registration, registered_codes

    class Snap:  # a stand-in LQC: the code of a feature is its first three channels
        codebook = torch.zeros(1, 3)

        def quantize(self, f):
            return None, f[:, :3]

    feats = torch.tensor([[1.0, 0, 0, 0], [0, 1.0, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0]])
    reg = Registration([feats], torch.tensor([[2.0], [0.05], [0.0], [0.0]]), torch.zeros(4), torch.zeros(4, 3), torch.zeros(4))
    means = torch.tensor([[0.0, 0, 0], [5.0, 0, 0], [0.1, 0, 0], [4.9, 0, 0]])
    codes = registered_codes(reg, Snap(), torch.full((4, 3), 9.0), means)
    assert codes.tolist() == [[1, 0, 0], [0, 1, 0], [1, 0, 0], [0, 1, 0]]  # weak evidence still codes; none copies
    assert reg.observed(0.1)[:, 0].tolist() == [True, False, False, False]  # but only the first is observed


def test_points_take_the_label_most_views_that_see_them_give():
    """register_points: one vote per view that sees a point (its depth agrees there, the pixel has
    a segment); a label one view of three gives drops out; a view whose depth lies elsewhere (the
    point is hidden there), a pixel without a segment and a point outside every image give none."""
    from langx_ros.core.field.registration import register_points

    w = h = 8
    K = torch.tensor([[8.0, 0, 4], [0, 8.0, 4], [0, 0, 1]])
    a, b = torch.tensor([[1.0, 0, 0, 0]]), torch.tensor([[0.0, 1, 0, 0]])
    seg = torch.zeros(1, h, w, dtype=torch.long)
    views, depths = [], []
    for feat in (a, a, b):  # the same camera three times; the third view labels everything "b"
        views.append(RegistrationView(torch.eye(4), K, w, h, seg, [feat]))
        depths.append(torch.full((h, w), 2.0))
    # points at pixel (1, 1) [all views], (6, 6) [hidden in view 0], (5, 2) [no segment in view 1], far outside
    pts = torch.tensor([[-0.75, -0.75, 2.0], [0.5, 0.5, 2.0], [0.25, -0.5, 2.0], [50.0, 0.0, 2.0]])
    depths[0][6, 6] = 1.0
    views[1] = RegistrationView(torch.eye(4), K, w, h, seg.clone(), [a])
    views[1].seg[0, 2, 5] = -1
    (feats, votes), = register_points(pts, views, depths, 1, RegistrationConfig())
    assert votes.tolist() == [3, 2, 2, 0]
    assert feats[0] @ a[0] > 0.99  # two of three views say "a"
    assert abs(float(feats[1] @ a[0]) - float(feats[1] @ b[0])) < 1e-5  # one "a", one "b": a tie
    assert feats[2] @ a[0] < feats[2] @ b[0] + 1e-6 and float(feats[2] @ b[0]) > 0.5  # views 0 and 2: a tie as well
    assert float(feats[3].abs().sum()) == 0.0
    assert register_points(pts, [RegistrationView(torch.eye(4), K, w, h, None, [])], depths[:1], 1, RegistrationConfig()) == [None]


def test_views_giving_the_majority_label_agree_under_the_default_vote():
    """The registration's agreeing views (what the instance rank weighs) under the default
    vote_rounds: with one view of those that see a floor Gaussian mislabelling it, the others
    agree. One mean-shift round judged agreement against the plain mean, which the minority pulls
    away from every view's label (measured here: 0.04 agreeing views on average instead of 2.1)."""
    geom, _, views, _, many, plain = _floor_mislabelled_in_one_view()
    cfg = RegistrationConfig(support_abs=0.05, segment_check=0)  # the vote alone
    voted = register(geom, views, 1, cfg, backend="torch")
    lost = (plain.agree_views[:, 0] - voted.agree_views[:, 0]).numpy()
    assert np.mean(lost[many] == 1) > 0.9, (cfg.vote_rounds, np.mean(lost[many] == 1))


def test_the_segment_check_leaves_out_a_segment_the_other_views_contradict():
    """View 0 reads the floor as label 1 (one segment with label 1's object): the views that see
    the floor on their surface call it the floor, so that segment is left out before the vote and
    even the plain mean keeps the floor's label; every other segment stays. A segment with fewer
    votes than segment_check_votes is not judged."""
    geom, feats, views, surf_lab, many, plain = _floor_mislabelled_in_one_view()
    cfg = RegistrationConfig(support_abs=0.05, vote_rounds=0)
    reg = register(geom, views, 1, cfg, backend="torch")
    assert reg.dropped_segments == 1
    wrong = views[0].seg[0] == 1
    assert bool((reg.views[0].seg[0][wrong] == -1).all()) and torch.equal(reg.views[0].seg[0][~wrong], views[0].seg[0][~wrong])
    assert all(torch.equal(a.seg, b.seg) for a, b in zip(reg.views[1:], views[1:]))
    f = torch.nn.functional.normalize(reg.features[0], dim=1)
    own = (f * torch.nn.functional.normalize(feats, dim=1)[torch.as_tensor(surf_lab)]).sum(1).numpy()
    assert np.median(own[many]) > 0.99, np.median(own[many])
    from langx_ros.core.field.registration import segment_agreement

    agreeing, contradicting = segment_agreement(views, reg.view_depth, 1, cfg)[0][0]
    assert float(contradicting[1]) >= 2 and float(agreeing[1]) == 0  # at least two views call it otherwise
    assert float(contradicting[2:].max()) == 0, contradicting  # the other objects' segments are not contradicted
    lax = register(geom, views, 1, RegistrationConfig(support_abs=0.05, vote_rounds=0, segment_check_votes=10_000_000), backend="torch")
    assert lax.dropped_segments == 0


def test_the_segment_check_can_lift_pixels_by_the_sensor_depth_only():
    """segment_check_sensor: where a view's sensor has no reading, its pixels are not lifted (the
    field's depth there, here the registration depth given for view 0, is not trusted), so the
    misread floor of a view without readings is not judged."""
    import dataclasses

    from langx_ros.core.field.registration import segment_agreement

    _, _, views, _, _, _ = _floor_mislabelled_in_one_view()
    depths = [v.depth for v in views]  # what the registration would use (the sensor's, else the field's)
    views[0] = dataclasses.replace(views[0], depth=torch.full_like(views[0].depth, float("nan")))
    cfg = RegistrationConfig(support_abs=0.05)
    _, contradicting = segment_agreement(views, depths, 1, cfg)[0][0]
    assert float(contradicting[1]) >= 2
    _, contradicting = segment_agreement(views, depths, 1, dataclasses.replace(cfg, segment_check_sensor=True))[0][0]
    assert float(contradicting.sum()) == 0


def test_the_depth_spread_of_a_pixel_is_that_of_the_gaussians_blended_into_it():
    """Registration.view_spread: at a pixel where two stacked Gaussians at 1 m and 2 m (opacity
    0.5 and 0.6) blend with weights 0.5 and 0.3, the weighted standard deviation of their depths,
    sqrt(2.125 - 1.375^2) = 0.484 m; one opaque Gaussian alone: 0; no opaque field: NaN."""
    x, y = (16.5 - 16) / 50.0, (12.5 - 12) / 50.0
    view = RegistrationView(EYE, K, 32, 24, None, [])
    two = register(_geom([[x, y, 1.0], [2 * x, 2 * y, 2.0]], [0.5, 0.6], 0.02), [view], 1, RegistrationConfig(),
                   backend="torch", depth_spread=True)
    assert abs(float(two.view_spread[0][12, 16]) - (2.125 - 1.375 ** 2) ** 0.5) < 1e-3
    assert abs(float(two.view_depth[0][12, 16]) - 1.375) < 1e-3
    one = register(_geom([[x, y, 1.0]], [0.9], 0.02), [view], 1, RegistrationConfig(), backend="torch", depth_spread=True)
    assert abs(float(one.view_spread[0][12, 16])) < 1e-3
    assert torch.isnan(one.view_spread[0][0, 0])  # nothing there
    assert register(_geom([[x, y, 1.0]], [0.9], 0.02), [view], 1, RegistrationConfig(), backend="torch").view_spread is None
