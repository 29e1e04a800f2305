"""Exemplar fills as content-aware fill does them (Photoshop's, GIMP's resynthesizer): PatchMatch
(Barnes et al. 2009) finds, for every patch of the hole, a similar patch of the known image and votes the
hole's pixels from them, coarse to fine -- so the fill is real texture of the same photo, re-arranged,
with none of a generator's up-sampling traces.

The solver is the `patchmatch-cython` package (BSD; numpy only, Cython kernels; `pip install
'inpaintseg[patchmatch]'`): ~0.5 s per 256x256 fill on one core of this project's CPU. It is optional: the
method is left out of the default selection, and a clear error names the extra when it is asked for by name.
"""

from __future__ import annotations

import numpy as np

from inpaintseg.synth.registry import Fill, MethodContext, method

PATCH_SIZES = (5, 7, 9)


@method("patchmatch", "copy", "content-aware fill: multi-scale PatchMatch from the same photo (patchmatch-cython)",
        requires=("patchmatch_cython", "patchmatch"))
def patchmatch(ctx: MethodContext, image: np.ndarray, mask: np.ndarray) -> Fill:
    """Patch size, structure-aware matching and the seam treatment (Poisson-like membrane or none) are drawn
    per sample, as users of the tools leave them or change them; the solver's own seed comes from `ctx.rng`."""
    from patchmatch_cython import CythonSolver, inpaint_pyramid

    rng = ctx.rng
    info = {"patch_size": int(PATCH_SIZES[int(rng.integers(len(PATCH_SIZES)))]),
            "edge_weighted": bool(rng.random() < 0.5), "poisson_blend": bool(rng.random() < 0.5)}
    seed = int(rng.integers(2**31))
    filled = inpaint_pyramid(np.ascontiguousarray(image), mask.astype(bool), solver_class=CythonSolver, seed=seed,
                             **info)
    return Fill(np.asarray(filled, dtype=np.uint8), mask, {**info, "seed": seed})
