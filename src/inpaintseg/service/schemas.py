"""The API's response bodies as pydantic models: they document every field (name, type, unit) in the OpenAPI
schema. The routes build plain dicts (`results`) for speed; a test validates real answers against these models,
so the schema and the answers cannot drift apart."""

from __future__ import annotations

from pydantic import BaseModel, Field


class VerdictBody(BaseModel):
    level: str = Field(description="'likely untouched', 'uncertain' or 'likely manipulated' (cut-offs chosen on "
                                   "validation); a model folder without a false-alarm table: 'untouched' or "
                                   "'manipulated' (score >= threshold)")
    false_alarm_rate: float | None = Field(description="share (0..1) of untouched validation images whose score "
                                                       "is at least this image's; null without a table")
    n_untouched: int | None = Field(description="untouched validation images the rate rests on (count)")
    note: str = Field(description="the verdict in one sentence")


class PredictionBody(BaseModel):
    image_id: str = Field(description="the upload's file name without its extension")
    width: int = Field(description="image width in pixels (native size; the mask has this size)")
    height: int = Field(description="image height in pixels")
    score: float = Field(description="image score, 0..1: mean of the top 1% pixel probabilities")
    label: int = Field(description="1 when score >= score_threshold (manipulated), else 0")
    score_threshold: float = Field(description="the image-level threshold of label, 0..1")
    verdict: VerdictBody
    threshold: float = Field(description="pixel threshold of the mask, 0..1 (p >= threshold)")
    gate: float | None = Field(description="image gate, 0..1: a score below it leaves the mask empty; null = none")
    gated: bool = Field(description="true when the mask is empty because the score is below the gate")
    tta: str = Field(description="test-time augmentation used")
    crf: str = Field(description="DenseCRF variant used ('off' = none)")
    manipulated_pixels: int = Field(description="pixels in the mask (count)")
    manipulated_fraction: float = Field(description="manipulated_pixels / (width x height), 0..1")
    rle: str = Field(description="the mask as row-major run-length pairs 'start length ...', 1-based "
                                 "(the submission format)")
    mask_png: str = Field(description="the mask, base64 1-bit PNG (decoders give 0/255), width x height")
    probability_png: str = Field(description="the probability map, base64 8-bit grey PNG, value = round(p x 255)")
    timings: dict[str, float] = Field(description="seconds per stage: receive, decode, queue, model, [crf], "
                                                  "encode, total")


class QualityBody(BaseModel):
    validation_dice: float | None = Field(description="mean per-image Dice on the validation images, 0..1")
    baselines: dict[str, float | None] = Field(description="the same Dice of every mask empty ('all-empty') and "
                                                           "every mask full ('all-full'), 0..1")
    warning: str | None = Field(description="set when the model does not beat a baseline: show it as a banner")


class ModelBody(BaseModel):
    name: str = Field(description="the model folder's name (never a path)")
    card: list[list[str]] = Field(description="model card summary: [label, text] pairs (what it was trained "
                                              "on, its measured quality, its post-processing)")
    quality: QualityBody
    verdict_levels: dict | None = Field(description="the score cut-offs of the verdict levels and the "
                                                    "false-alarm table (score_threshold, false_alarm_rate, "
                                                    "detection_rate, all 0..1); null for an old model folder")
    architecture: dict
    input: dict = Field(description="input mode and size in pixels")
    postprocess: dict = Field(description="threshold (0..1), tta, crf, where each came from, the calibration")
    metrics: dict = Field(description="validation metrics of the best epoch, 0..1 (losses unitless)")
    data: dict = Field(description="training data summary: image counts; folder names only")
    device: str
    options: dict
    limits: dict = Field(description="max_upload_bytes (bytes), max_pixels (pixels), workers, queue (requests), "
                                     "auth (bool)")


class HealthBody(BaseModel):
    status: str = Field(description="'ok'")
    version: str
    admitted: int = Field(description="requests being served or waiting (count)")
    capacity: int = Field(description="requests admitted at most (workers + queue)")


class ErrorBody(BaseModel):
    error: str = Field(description="machine-readable code, e.g. payload_too_large")
    status: int = Field(description="the HTTP status")
    message: str = Field(description="what went wrong and how to fix it")
