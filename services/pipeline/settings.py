"""The settings of the services a run starts, read from the flags it passes them.

A tool that starts ``eew detect`` and ``eew alert`` with extra flags (``eew validate``'s
``--detector-args``/``--alerting-args``) reads here what those services will use, through their
own settings classes, so the tool and the services never disagree on a default.
"""

from __future__ import annotations

from services.alerting.settings import AlertingSettings
from services.common.settings import load_settings
from services.detector.settings import DetectorSettings


def alerting_settings(args: list[str]) -> AlertingSettings:
    """``eew alert``'s settings for these flags."""
    return load_settings(AlertingSettings, args)


def detector_settings(args: list[str]) -> DetectorSettings:
    """``eew detect``'s settings for these flags."""
    return load_settings(DetectorSettings, args)


def detector_max_gap_s(args: list[str]) -> float:
    """The data gap after which the detector resets a station (a run cuts its replay blocks inside such gaps)."""
    return float(detector_settings(args).core.max_gap_s)


def detection_threshold(args: list[str], assoc_threshold: float | None) -> float | None:
    """The threshold a station triggers at: the alerting's, else the detector's (flag or model contract);
    None when neither can be read (the detector reports that error itself)."""
    if assoc_threshold is not None:
        return assoc_threshold
    from models.contract import load_contract

    ds = detector_settings(args)
    if ds.detection_threshold is not None:
        return float(ds.detection_threshold)
    try:
        return float(load_contract(ds.model_dir).thresholds.detection)
    except Exception:  # noqa: BLE001 -- e.g. no model folder: the caller draws no threshold line
        return None
