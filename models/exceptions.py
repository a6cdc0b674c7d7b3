"""Model errors."""

from services.common.exceptions import EEWError


class ContractError(EEWError):
    """The ONNX model does not match its tensor contract (names, dtypes, shapes, checksum)."""


class DataError(EEWError):
    """A dataset folder or record cannot be read as one of the supported layouts."""
