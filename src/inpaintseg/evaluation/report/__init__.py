"""The offline HTML report of a run (`inpaintseg report`): `write_report` predicts with `predict_folder`, scores
with `evaluation.evaluate.evaluate_detailed` and renders the result (`build`), with figures (`figures`,
`explain`) and HTML pieces (`page`). The report folder opens anywhere without a network."""

from inpaintseg.evaluation.report.build import (BASELINES_FILE, EVALUATION_FILE, PREDICTIONS_DIR, REPORT_FILE,
                                                PredictionFiles, write_report)

__all__ = ["BASELINES_FILE", "EVALUATION_FILE", "PREDICTIONS_DIR", "REPORT_FILE", "PredictionFiles", "write_report"]
