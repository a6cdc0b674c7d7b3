from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class SampleEncoding(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SAMPLE_ENCODING_UNSPECIFIED: _ClassVar[SampleEncoding]
    SAMPLE_ENCODING_INT32_LE: _ClassVar[SampleEncoding]
    SAMPLE_ENCODING_FLOAT32_LE: _ClassVar[SampleEncoding]
    SAMPLE_ENCODING_FLOAT64_LE: _ClassVar[SampleEncoding]

class AlertType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ALERT_TYPE_UNSPECIFIED: _ClassVar[AlertType]
    ALERT_TYPE_NEW: _ClassVar[AlertType]
    ALERT_TYPE_UPDATE: _ClassVar[AlertType]
    ALERT_TYPE_CANCEL: _ClassVar[AlertType]
SAMPLE_ENCODING_UNSPECIFIED: SampleEncoding
SAMPLE_ENCODING_INT32_LE: SampleEncoding
SAMPLE_ENCODING_FLOAT32_LE: SampleEncoding
SAMPLE_ENCODING_FLOAT64_LE: SampleEncoding
ALERT_TYPE_UNSPECIFIED: AlertType
ALERT_TYPE_NEW: AlertType
ALERT_TYPE_UPDATE: AlertType
ALERT_TYPE_CANCEL: AlertType

class WaveformPacket(_message.Message):
    __slots__ = ("schema_version", "network", "station", "location", "channel", "start_time_ns", "sampling_rate", "encoding", "num_samples", "samples", "ingest_time_ns", "sequence", "source")
    SCHEMA_VERSION_FIELD_NUMBER: _ClassVar[int]
    NETWORK_FIELD_NUMBER: _ClassVar[int]
    STATION_FIELD_NUMBER: _ClassVar[int]
    LOCATION_FIELD_NUMBER: _ClassVar[int]
    CHANNEL_FIELD_NUMBER: _ClassVar[int]
    START_TIME_NS_FIELD_NUMBER: _ClassVar[int]
    SAMPLING_RATE_FIELD_NUMBER: _ClassVar[int]
    ENCODING_FIELD_NUMBER: _ClassVar[int]
    NUM_SAMPLES_FIELD_NUMBER: _ClassVar[int]
    SAMPLES_FIELD_NUMBER: _ClassVar[int]
    INGEST_TIME_NS_FIELD_NUMBER: _ClassVar[int]
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    schema_version: int
    network: str
    station: str
    location: str
    channel: str
    start_time_ns: int
    sampling_rate: float
    encoding: SampleEncoding
    num_samples: int
    samples: bytes
    ingest_time_ns: int
    sequence: int
    source: str
    def __init__(self, schema_version: _Optional[int] = ..., network: _Optional[str] = ..., station: _Optional[str] = ..., location: _Optional[str] = ..., channel: _Optional[str] = ..., start_time_ns: _Optional[int] = ..., sampling_rate: _Optional[float] = ..., encoding: _Optional[_Union[SampleEncoding, str]] = ..., num_samples: _Optional[int] = ..., samples: _Optional[bytes] = ..., ingest_time_ns: _Optional[int] = ..., sequence: _Optional[int] = ..., source: _Optional[str] = ...) -> None: ...

class StationScore(_message.Message):
    __slots__ = ("schema_version", "network", "station", "location", "channel_prefix", "window_start_time_ns", "window_end_time_ns", "probability", "triggered", "has_p_onset", "p_onset_time_ns", "p_onset_probability", "model_id", "model_version", "ingest_time_ns", "scored_time_ns", "peak_amplitude", "components", "peak_displacement")
    SCHEMA_VERSION_FIELD_NUMBER: _ClassVar[int]
    NETWORK_FIELD_NUMBER: _ClassVar[int]
    STATION_FIELD_NUMBER: _ClassVar[int]
    LOCATION_FIELD_NUMBER: _ClassVar[int]
    CHANNEL_PREFIX_FIELD_NUMBER: _ClassVar[int]
    WINDOW_START_TIME_NS_FIELD_NUMBER: _ClassVar[int]
    WINDOW_END_TIME_NS_FIELD_NUMBER: _ClassVar[int]
    PROBABILITY_FIELD_NUMBER: _ClassVar[int]
    TRIGGERED_FIELD_NUMBER: _ClassVar[int]
    HAS_P_ONSET_FIELD_NUMBER: _ClassVar[int]
    P_ONSET_TIME_NS_FIELD_NUMBER: _ClassVar[int]
    P_ONSET_PROBABILITY_FIELD_NUMBER: _ClassVar[int]
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    INGEST_TIME_NS_FIELD_NUMBER: _ClassVar[int]
    SCORED_TIME_NS_FIELD_NUMBER: _ClassVar[int]
    PEAK_AMPLITUDE_FIELD_NUMBER: _ClassVar[int]
    COMPONENTS_FIELD_NUMBER: _ClassVar[int]
    PEAK_DISPLACEMENT_FIELD_NUMBER: _ClassVar[int]
    schema_version: int
    network: str
    station: str
    location: str
    channel_prefix: str
    window_start_time_ns: int
    window_end_time_ns: int
    probability: float
    triggered: bool
    has_p_onset: bool
    p_onset_time_ns: int
    p_onset_probability: float
    model_id: str
    model_version: str
    ingest_time_ns: int
    scored_time_ns: int
    peak_amplitude: float
    components: int
    peak_displacement: float
    def __init__(self, schema_version: _Optional[int] = ..., network: _Optional[str] = ..., station: _Optional[str] = ..., location: _Optional[str] = ..., channel_prefix: _Optional[str] = ..., window_start_time_ns: _Optional[int] = ..., window_end_time_ns: _Optional[int] = ..., probability: _Optional[float] = ..., triggered: _Optional[bool] = ..., has_p_onset: _Optional[bool] = ..., p_onset_time_ns: _Optional[int] = ..., p_onset_probability: _Optional[float] = ..., model_id: _Optional[str] = ..., model_version: _Optional[str] = ..., ingest_time_ns: _Optional[int] = ..., scored_time_ns: _Optional[int] = ..., peak_amplitude: _Optional[float] = ..., components: _Optional[int] = ..., peak_displacement: _Optional[float] = ...) -> None: ...

class StationContribution(_message.Message):
    __slots__ = ("network", "station", "location", "p_time_ns", "probability", "latitude", "longitude")
    NETWORK_FIELD_NUMBER: _ClassVar[int]
    STATION_FIELD_NUMBER: _ClassVar[int]
    LOCATION_FIELD_NUMBER: _ClassVar[int]
    P_TIME_NS_FIELD_NUMBER: _ClassVar[int]
    PROBABILITY_FIELD_NUMBER: _ClassVar[int]
    LATITUDE_FIELD_NUMBER: _ClassVar[int]
    LONGITUDE_FIELD_NUMBER: _ClassVar[int]
    network: str
    station: str
    location: str
    p_time_ns: int
    probability: float
    latitude: float
    longitude: float
    def __init__(self, network: _Optional[str] = ..., station: _Optional[str] = ..., location: _Optional[str] = ..., p_time_ns: _Optional[int] = ..., probability: _Optional[float] = ..., latitude: _Optional[float] = ..., longitude: _Optional[float] = ...) -> None: ...

class Alert(_message.Message):
    __slots__ = ("schema_version", "event_id", "version", "type", "origin_time_ns", "probability", "stations", "has_location", "latitude", "longitude", "depth_km", "location_uncertainty_km", "has_magnitude", "magnitude", "magnitude_uncertainty", "magnitude_type", "created_time_ns", "first_p_time_ns", "latest_ingest_time_ns", "reason", "decision_time_ns", "origin_time_uncertainty_s", "azimuthal_gap_deg", "magnitude_station_count", "location_uncertain", "magnitude_lower_bound")
    SCHEMA_VERSION_FIELD_NUMBER: _ClassVar[int]
    EVENT_ID_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    ORIGIN_TIME_NS_FIELD_NUMBER: _ClassVar[int]
    PROBABILITY_FIELD_NUMBER: _ClassVar[int]
    STATIONS_FIELD_NUMBER: _ClassVar[int]
    HAS_LOCATION_FIELD_NUMBER: _ClassVar[int]
    LATITUDE_FIELD_NUMBER: _ClassVar[int]
    LONGITUDE_FIELD_NUMBER: _ClassVar[int]
    DEPTH_KM_FIELD_NUMBER: _ClassVar[int]
    LOCATION_UNCERTAINTY_KM_FIELD_NUMBER: _ClassVar[int]
    HAS_MAGNITUDE_FIELD_NUMBER: _ClassVar[int]
    MAGNITUDE_FIELD_NUMBER: _ClassVar[int]
    MAGNITUDE_UNCERTAINTY_FIELD_NUMBER: _ClassVar[int]
    MAGNITUDE_TYPE_FIELD_NUMBER: _ClassVar[int]
    CREATED_TIME_NS_FIELD_NUMBER: _ClassVar[int]
    FIRST_P_TIME_NS_FIELD_NUMBER: _ClassVar[int]
    LATEST_INGEST_TIME_NS_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    DECISION_TIME_NS_FIELD_NUMBER: _ClassVar[int]
    ORIGIN_TIME_UNCERTAINTY_S_FIELD_NUMBER: _ClassVar[int]
    AZIMUTHAL_GAP_DEG_FIELD_NUMBER: _ClassVar[int]
    MAGNITUDE_STATION_COUNT_FIELD_NUMBER: _ClassVar[int]
    LOCATION_UNCERTAIN_FIELD_NUMBER: _ClassVar[int]
    MAGNITUDE_LOWER_BOUND_FIELD_NUMBER: _ClassVar[int]
    schema_version: int
    event_id: str
    version: int
    type: AlertType
    origin_time_ns: int
    probability: float
    stations: _containers.RepeatedCompositeFieldContainer[StationContribution]
    has_location: bool
    latitude: float
    longitude: float
    depth_km: float
    location_uncertainty_km: float
    has_magnitude: bool
    magnitude: float
    magnitude_uncertainty: float
    magnitude_type: str
    created_time_ns: int
    first_p_time_ns: int
    latest_ingest_time_ns: int
    reason: str
    decision_time_ns: int
    origin_time_uncertainty_s: float
    azimuthal_gap_deg: float
    magnitude_station_count: int
    location_uncertain: bool
    magnitude_lower_bound: bool
    def __init__(self, schema_version: _Optional[int] = ..., event_id: _Optional[str] = ..., version: _Optional[int] = ..., type: _Optional[_Union[AlertType, str]] = ..., origin_time_ns: _Optional[int] = ..., probability: _Optional[float] = ..., stations: _Optional[_Iterable[_Union[StationContribution, _Mapping]]] = ..., has_location: _Optional[bool] = ..., latitude: _Optional[float] = ..., longitude: _Optional[float] = ..., depth_km: _Optional[float] = ..., location_uncertainty_km: _Optional[float] = ..., has_magnitude: _Optional[bool] = ..., magnitude: _Optional[float] = ..., magnitude_uncertainty: _Optional[float] = ..., magnitude_type: _Optional[str] = ..., created_time_ns: _Optional[int] = ..., first_p_time_ns: _Optional[int] = ..., latest_ingest_time_ns: _Optional[int] = ..., reason: _Optional[str] = ..., decision_time_ns: _Optional[int] = ..., origin_time_uncertainty_s: _Optional[float] = ..., azimuthal_gap_deg: _Optional[float] = ..., magnitude_station_count: _Optional[int] = ..., location_uncertain: _Optional[bool] = ..., magnitude_lower_bound: _Optional[bool] = ...) -> None: ...
