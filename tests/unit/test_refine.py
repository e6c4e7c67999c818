"""Batched semantic refinement on small synthetic cases (CPU; the CUDA case skips without CUDA)."""
import numpy as np
import pytest
import torch

from alignimation_tui.register import (RefineSettings, apply, ellipse_region, fit_similarity, gaussian_maps,
                                       refine_chunk, register_frames)
from tests.conftest import similarity

REF = np.array([[400.0, 300], [520, 304], [462, 370], [410, 430], [510, 434]])
SIZE = (1008, 756)
BOX = np.array([330.0, 200, 590, 480])


def frames(n, noise=0.0, seed=0):
    rng = np.random.default_rng(seed)
    truths = [similarity(rng.uniform(-15, 15), rng.uniform(0.8, 1.2), *rng.uniform(-60, 60, 2), centre=(460, 370))
              for _ in range(n)]
    clean = np.stack([apply(np.linalg.inv(t), REF) for t in truths])
    boxes = np.stack([np.r_[apply(np.linalg.inv(t), BOX.reshape(2, 2)).min(0),
                            apply(np.linalg.inv(t), BOX.reshape(2, 2)).max(0)] for t in truths])
    return truths, clean, clean + rng.normal(scale=noise * SIZE[1], size=clean.shape), boxes


def err_pct(m, clean):
    return np.linalg.norm(apply(m, clean) - REF, axis=-1).mean(-1) / SIZE[1] * 100


def run(points, boxes, weights=None, settings=RefineSettings(), device="cpu"):
    n = len(points)
    w = np.ones((n, 5)) if weights is None else weights
    return register_frames(points, w, np.tile(SIZE, (n, 1)), REF, np.ones(5), SIZE, 1.0, boxes=boxes,
                           ref_box=BOX, settings=settings, device=device)


def test_known_transforms_recovered_in_a_mixed_batch():
    truths, clean, noisy, boxes = frames(12)
    m, before, after = run(clean, boxes)
    assert np.median(err_pct(m, clean)) < 0.3 and err_pct(m, clean).max() < 0.5
    assert (after <= before + 1e-9).all()


def test_missing_keypoint_still_registers():
    truths, clean, _, boxes = frames(3, seed=1)
    pts = clean.copy()
    pts[1, 2] = np.nan  # nose not found
    w = np.ones((3, 5))
    w[1, 2] = 0
    m, _, _ = run(pts, boxes, w)
    assert err_pct(m, clean).max() < 0.5


def test_with_noise_never_worse_than_closed_form():
    _, clean, noisy, boxes = frames(32, noise=0.01, seed=2)
    m, _, _ = run(noisy, boxes)
    m0 = fit_similarity(noisy, REF, np.ones(5))
    assert np.median(err_pct(m, clean)) <= np.median(err_pct(m0, clean)) + 0.02


def test_refinement_never_ends_worse_than_its_start():
    """Start from deliberately bad matrices (some far off): every frame ends at or below its start."""
    _, clean, _, boxes = frames(6, seed=3)
    good = fit_similarity(clean, REF, np.ones(5))
    bad = good.copy()
    bad[:3, :2, 2] += [[8, -5], [200, 150], [-3, 4]]  # small, hopeless, small
    work = 64
    dst_scale = work / max(SIZE)
    src_scale = torch.full((6,), dst_scale)
    dh, dw = round(SIZE[1] * dst_scale), round(SIZE[0] * dst_scale)
    dst = gaussian_maps(torch.tensor(REF * dst_scale, dtype=torch.float32)[None], torch.ones(1, 5), dh, dw, 0.04 * work,
                        ellipse_region(torch.tensor(BOX * dst_scale, dtype=torch.float32)[None], dh, dw))
    src = gaussian_maps(torch.tensor(clean, dtype=torch.float32) * dst_scale, torch.ones(6, 5), work, work,
                        0.04 * work / torch.tensor(np.sqrt(np.linalg.det(good[:, :2, :2])), dtype=torch.float32))
    centre = torch.tensor(REF.mean(0) * dst_scale, dtype=torch.float32)
    m, before, after = refine_chunk(torch.tensor(bad, dtype=torch.float32), src, dst, src_scale, dst_scale, centre,
                                    RefineSettings(iterations=30))
    assert (after <= before).all()
    assert after[0] < before[0] and after[2] < before[2]  # nearby starts improve
    assert err_pct(m.double().numpy()[[0, 2]], clean[[0, 2]]).max() < err_pct(bad[[0, 2]], clean[[0, 2]]).max()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_devices_agree():
    _, clean, noisy, boxes = frames(16, noise=0.01, seed=4)
    m_cpu, _, _ = run(noisy, boxes, device="cpu")
    m_gpu, _, _ = run(noisy, boxes, device="cuda")
    assert np.abs(apply(m_cpu, clean) - apply(m_gpu, clean)).max() < 0.002 * SIZE[1]


def silhouette_mask(frame_to_ref, hh, ww, scale):
    """A head-and-body silhouette (in reference pixels) sampled on a grid of frame pixels * scale."""
    ys, xs = np.mgrid[0:hh, 0:ww] / scale
    rx = frame_to_ref[0, 0] * xs + frame_to_ref[0, 1] * ys + frame_to_ref[0, 2]
    ry = frame_to_ref[1, 0] * xs + frame_to_ref[1, 1] * ys + frame_to_ref[1, 2]
    m = np.zeros_like(rx)
    for (cx, cy), (ax, ay) in (((460, 300), (70, 90)), ((460, 560), (130, 220))):
        m = np.maximum(m, 0.5 * (1 + np.tanh((1 - ((rx - cx) / ax) ** 2 - ((ry - cy) / ay) ** 2) / 0.1)))
    return m


def test_person_masks_pull_noisy_keypoints_to_the_truth():
    truths, clean, noisy, _ = frames(24, noise=0.01, seed=5)
    work = RefineSettings().work_size
    s = work / max(SIZE)
    masks = np.stack([silhouette_mask(t, work, work, s) for t in truths])[:, None]
    ref_mask = silhouette_mask(np.eye(3), round(SIZE[1] * s), round(SIZE[0] * s), s)[None, None]
    m, before, after = register_frames(noisy, np.ones((24, 5)), np.tile(SIZE, (24, 1)), REF, np.ones(5), SIZE, 1.0,
                                       masks=masks, ref_mask=ref_mask, settings=RefineSettings())
    m0 = fit_similarity(noisy, REF, np.ones(5))
    assert (after <= before).all()
    assert np.median(err_pct(m, clean)) < 0.5 * np.median(err_pct(m0, clean))


def test_our_adam_steps_as_torchs():
    """The refinement's Adam (its own, so that the first refinement does not import torch._dynamo,
    sympy and triton: 2 s) takes the same steps as torch.optim.Adam, learning rate changing as the
    refinement changes it, on a real objective's gradients."""
    import torch

    from alignimation_tui.register import _Adam

    target = torch.tensor([[0.3, -1.2, 2.0, 0.05], [1.5, 0.0, -0.7, 3.0]])
    ours = torch.zeros(2, 4, requires_grad=True)
    theirs = torch.zeros(2, 4, requires_grad=True)
    adam, opt = _Adam(ours), torch.optim.Adam([theirs], lr=0.1)
    for i in range(30):
        lr = 0.1 * (1 - i / 31)
        for group in opt.param_groups:
            group["lr"] = lr
        for p in (ours, theirs):
            p.grad = None
            (((p - target) ** 2) * torch.cos(p)).sum().backward()
        adam.step(lr)
        opt.step()
        torch.testing.assert_close(ours, theirs, rtol=1e-6, atol=1e-7)
    assert (ours - torch.zeros(2, 4)).abs().max() > 0.5  # it moved
