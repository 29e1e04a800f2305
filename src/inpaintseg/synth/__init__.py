"""The manipulation engine behind `inpaintseg demo-data` (see `engine` for the whole pipeline).

Public entry points: `generate_demo_data(out, settings=None, **fields)` with `EngineSettings` (its fields:
n_train, n_test, size, seed, ...) and `method_table()`; methods live in `registry.METHODS` (filled by
importing `methods`).
"""

from inpaintseg.synth.engine import EngineSettings, generate_demo_data, method_table

__all__ = ["EngineSettings", "generate_demo_data", "method_table"]
