"""The manipulation methods, one module per family; importing this package registers them all
(in `inpaintseg.synth.registry.METHODS`, in this order)."""

from inpaintseg.synth.methods import classical, copy, exemplar, generators, selfblend  # noqa: F401
