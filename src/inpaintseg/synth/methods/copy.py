"""Family "copy": regions filled with pixels copied from elsewhere (same photo or another one)."""

from __future__ import annotations

import cv2
import numpy as np

from inpaintseg.synth.blend import alpha_blend, feather_alpha, poisson_blend, ring
from inpaintseg.synth.registry import Fill, MethodContext, method

# Poisson blending solves one sparse system per region (0.3 s for 32k pixels); larger regions (big
# --size) are feathered instead.
POISSON_MAX_PIXELS = 150_000


def _best_offset(rng: np.random.Generator, source: np.ndarray, component: np.ndarray,
                 ring_mask: np.ndarray, candidates: int = 32) -> tuple[int, int]:
    """The translation (dy, dx) whose source ring best matches the ring around `component`.

    Offsets keep the component's bounding box inside the image and move it by at least a
    quarter of its size. Shape: (H, W, 3), (H, W) uint8, (H, W) bool -> (dy, dx).
    """
    height, width = component.shape
    ys, xs = np.nonzero(component)
    y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
    ry, rx = np.nonzero(ring_mask)
    target = source[ry, rx].astype(np.float32)
    min_shift = max(2, (y1 - y0 + x1 - x0) // 8)
    best, best_cost = (0, 0), np.inf
    for _ in range(candidates):
        dy = int(rng.integers(-y0, height - y1 + 1))
        dx = int(rng.integers(-x0, width - x1 + 1))
        if abs(dy) + abs(dx) < min_shift:
            continue
        sy, sx = ry + dy, rx + dx
        inside = (sy >= 0) & (sy < height) & (sx >= 0) & (sx < width)
        if inside.mean() < 0.5:
            continue
        cost = float(np.mean((source[sy[inside], sx[inside]].astype(np.float32) - target[inside]) ** 2))
        if cost < best_cost:
            best, best_cost = (dy, dx), cost
    if best == (0, 0):  # none qualified (the component spans the image): point-mirror the box
        best = (height - y1 - y0, width - x1 - x0)
    return best


@method("patch", "copy", "exemplar fill: best-matching translated patch per mask component, colour-matched, feathered")
def patch(ctx: MethodContext, image: np.ndarray, mask: np.ndarray) -> Fill:
    """The source is the Telea-filled image, so source pixels inside the mask never copy the removed
    content. Each patch is shifted to the mean colour of the ring around its component and feathered
    into the Telea fill over a few pixels at the mask border."""
    rng = ctx.rng
    height, width = mask.shape
    base = cv2.inpaint(image, mask * np.uint8(255), int(rng.integers(3, 6)), cv2.INPAINT_TELEA)
    out = base.astype(np.float32)
    ring_width = max(2, min(height, width) // 40)
    feather = float(rng.uniform(1.5, 4.0))
    alpha = feather_alpha(mask, feather)[:, :, 0]
    count, labels = cv2.connectedComponents(mask, connectivity=8)
    for label in range(1, count):
        component = (labels == label).astype(np.uint8)
        ring_mask = ring(component, ring_width)
        dy, dx = _best_offset(rng, base, component, ring_mask)
        ys, xs = np.nonzero(component)
        piece = base[np.clip(ys + dy, 0, height - 1), np.clip(xs + dx, 0, width - 1)].astype(np.float32)
        ry, rx = np.nonzero(ring_mask)
        sry, srx = np.clip(ry + dy, 0, height - 1), np.clip(rx + dx, 0, width - 1)
        piece += base[ry, rx].astype(np.float32).mean(0) - base[sry, srx].astype(np.float32).mean(0)
        a = alpha[ys, xs, None]
        out[ys, xs] = a * piece + (1.0 - a) * out[ys, xs]
    return Fill(np.clip(np.round(out), 0, 255).astype(np.uint8), mask, {"feather": round(feather, 3)})


def _random_affine(rng: np.random.Generator, mask: np.ndarray, shift: bool) -> tuple[np.ndarray, dict]:
    """A 2x3 matrix mapping output (x, y) to source coordinates: rotation +-20 deg and scale
    0.8-1.25 about the mask centre, plus (for copy-move) a shift of 25-60% of the side."""
    height, width = mask.shape
    ys, xs = np.nonzero(mask)
    cx, cy = float(xs.mean()), float(ys.mean())
    angle = float(rng.uniform(-20, 20))
    scale = float(np.exp(rng.uniform(np.log(0.8), np.log(1.25))))
    matrix = cv2.getRotationMatrix2D((cx, cy), angle, scale)
    dx = dy = 0.0
    if shift:
        distance = rng.uniform(0.25, 0.6) * min(height, width)
        theta = rng.uniform(0, 2 * np.pi)
        dx, dy = distance * np.cos(theta), distance * np.sin(theta)
        matrix[:, 2] += (dx, dy)
    info = {"angle": round(angle, 2), "scale": round(scale, 3), "shift": [round(float(dy), 1), round(float(dx), 1)]}
    return matrix, info


def _paste(ctx: MethodContext, image: np.ndarray, source: np.ndarray, mask: np.ndarray, shift: bool) -> Fill:
    """`source` warped by a random affine, pasted into `image` by Poisson or feathered-alpha blending."""
    matrix, info = _random_affine(ctx.rng, mask, shift)
    height, width = mask.shape
    top = cv2.warpAffine(source, matrix, (width, height), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                         borderMode=cv2.BORDER_REFLECT)
    poisson = ctx.rng.random() < 0.5
    if poisson and mask.sum() <= POISSON_MAX_PIXELS:
        return Fill(poisson_blend(image, top, mask), mask, {**info, "blend": "poisson"})
    feather = float(ctx.rng.uniform(1.5, 5.0))
    return Fill(alpha_blend(image, top, feather_alpha(mask, feather)), mask,
                {**info, "blend": "feather", "feather": round(feather, 3)})


@method("copy_move", "copy", "region copied from elsewhere in the same photo (shift, rotate, scale), Poisson or feathered")
def copy_move(ctx: MethodContext, image: np.ndarray, mask: np.ndarray) -> Fill:
    return _paste(ctx, image, image, mask, shift=True)


@method("splice", "copy", "region spliced in from another photo (rotate, scale), Poisson or feathered")
def splice(ctx: MethodContext, image: np.ndarray, mask: np.ndarray) -> Fill:
    donor_name, donor = ctx.donor()
    fill = _paste(ctx, image, donor, mask, shift=False)
    fill.info["donor"] = donor_name
    return fill
