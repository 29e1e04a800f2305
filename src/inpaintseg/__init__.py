"""inpaintseg: find AI-inpainted regions in images (per-pixel binary segmentation)."""

__version__ = "0.1.0"
