"""The detector's pure core: per-station buffers, time-aligned chunking, batched stateful scoring,
triggering and P picking. NumPy only, no I/O: the Kafka service feeds it decoded packets and
publishes what it returns; unit tests feed it synthetic packets and a stand-in scorer.

Time model
    Every sample lives on the model's sample grid: absolute sample index ``i`` is the time
    ``i / fs`` since the epoch (ns arithmetic is exact integer arithmetic). Packet start times are
    snapped to the nearest grid point (jitter below half a sample disappears). Chunk ``k`` covers
    indices ``[k*C, (k+1)*C)`` where ``C`` is the stride, so the chunks -- and therefore the
    scores -- do not depend on packet boundaries, packet order or replay speed.

Per station (stream key "NET.STA.LOC.BI?")
    A ring buffer per component in the model's order (Z, N|1, E|2) holds ``history_s`` of scored
    data (to tell duplicates from late data) and ``buffer_s`` of data ahead of the next chunk.
    A mask marks real samples; the rest is fill. Gaps inside a component are filled with its
    last value (the contract's ``hold_last``); a late packet may overwrite fill that is not yet
    scored, and is dropped (counted) otherwise; samples already present are dropped as duplicates.
    A component that never arrives is declared dead after ``max_component_wait_s`` of data on the
    others (zeros, not counted in ``components``); one that stops is hold-filled while it lags and
    declared dead once it lags by ``max_gap_s``. A component declared dead or coming back to life
    restarts the station's warm-up (no trigger for ``warmup_s``): the model restarts that component's
    normalisation, and a switch-off or switch-on is not an earthquake. A jump forward of more than ``max_gap_s`` (or
    back beyond the scored data) is a discontinuity: it resets the station only once
    ``resync_packets`` consistent packets confirm it, so a single packet with a wild timestamp
    cannot derail a station.

Rates and sensors (``services.common.streams`` decides what is scorable)
    Every rate from 20 Hz up with a small rational ratio to the model rate (20, 31.25, 40, 50, 80,
    200, 250 Hz, ...) is resampled to the model rate per component by a streaming polyphase filter
    (``services.detector.resample``; its delay compensated exactly, its state carried across
    packets). Accelerometers (instrument codes N, L, G) are scored as acceleration: the model is
    trained on both (see the model card for why not velocity). Gaps, overlaps that do not line up,
    rate changes and restarts reset the resampler (counted); other rates and channels are refused
    with a reason (``services.common.streams.REJECT_HINTS``).

Triggers (``services.common.triggers``: one home for the rule)
    A station triggers when its event probability reaches the detection threshold after warm-up,
    which opens an *episode*; its P pick is the latest strong P-curve peak within ``pick_max_lead_s``
    before the trigger and after the station's latest onset (``triggers.picks``). Inside an episode
    (the event probability stays high through a coda) a new P-curve onset triggers again with its own
    pick (``triggers.onset``, "re-arm rules": at ``retrigger_threshold``, ``retrigger_min_separation_s``
    after the latest onset, after the P curve fell below ``p_rearm_threshold``); the episode closes
    after ``rearm_s`` below the re-arm level.

Scoring
    A chunk is ready when every live component has data past its end (or the rule above declares
    the stragglers dead/gapped). Ready chunks of many stations go to the scorer in one call (up to
    ``max_batch``); per-station model states live in one preallocated array. One round scores at
    most one chunk per station (the state of chunk k+1 depends on chunk k); rounds repeat until
    nothing is ready.
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Protocol, Self

import numpy as np
from pydantic import Field, model_validator

from services.common.codec import Packet
from services.common.displacement import DisplacementBank, integrations_for
from services.common.domain import station_id
from services.common.settings import CoreModel
from services.common.streams import ACCELERATION, ChannelInfo, classify_channel, resample_ratio
from services.common.triggers.onset import OnsetRule, OnsetState, decide, first_pick, picked
from services.common.triggers.picks import PICK_MAX_LEAD_S
from services.detector.resample import Resampler

NS_PER_S = 1_000_000_000

UNSEEN, ALIVE, DEAD = 0, 1, 2
#: Packets are written in pieces of at most this many seconds (keeps the ring bounded).
PIECE_S = 5.0
#: Most entries of offset bookkeeping kept per station (oldest dropped beyond it).
MAX_TAGS = 4096

# Keys of CoreDetector.counts (the service turns them into metrics).
C_GAPS = "gaps"  # gap episodes inside a component (hold-last filled)
C_GAP_SAMPLES = "gap_samples"
C_DUP_SAMPLES = "duplicate_samples"
C_DUP_PACKETS = "duplicate_packets"  # packets with nothing new in them
C_LATE_SAMPLES = "late_samples"  # arrived after their chunk was scored: dropped
C_LATE_PACKETS = "late_packets"
C_LATE_FILLED = "late_fill_samples"  # late samples that replaced fill before scoring
C_DEAD = "dead_components"
C_REVIVED = "revived_components"
C_RESETS = "station_resets"
C_TIME_JUMP = "time_jump_discarded"  # packets of an unconfirmed discontinuity, dropped
C_EVICTED = "stations_evicted"
C_TRIGGERS = "triggers"
C_CHUNKS = "chunks_scored"
C_FORCED = "forced_drains"
C_FRONT_RESETS = "resampler_resets"  # a component's resampler/integrator restarted (gap, rate change)
C_RATE_CHANGES = "rate_changes"  # a component's sampling rate changed mid-stream
C_CLIPPED = "clipped_packets"  # velocity packets with clipped samples
C_SITE_SUPPRESSED = "site_suppressed_triggers"  # a site's secondary sensor did not trigger
C_RETRIGGERS = "retriggers"  # new triggers on a new P inside an episode (also counted in C_TRIGGERS)


class StepOutput(Protocol):
    event_prob: np.ndarray
    p_prob: np.ndarray
    state: np.ndarray


#: The scoring callable: wave (B, 3, C) float32, state (B, S) float32 -> outputs. StreamingModel.step fits.
Scorer = Callable[[np.ndarray, np.ndarray], StepOutput]


class CoreTuning(CoreModel):
    """The core's knobs an operator sets: one declaration (default, meaning, limits); the nested
    ``core`` group of ``DetectorSettings`` (flags ``--rearm-s`` ..., environment ``EEW_REARM_S`` ...)."""

    rearm_threshold: float | None = Field(
        None,
        gt=0.0,
        le=1.0,
        description="Probability below which a triggered station counts as quiet (default: half of detection).",
    )
    rearm_s: float = Field(3.0, ge=0.0, description="Seconds below the re-arm threshold before a station can trigger anew.")
    clip_counts: float = Field(
        8_000_000.0,
        gt=0.0,
        description="A velocity sample at or above this |count| is clipped (default ~95 % of a 24-bit "
        "digitiser); a run of clip-run samples at a packet's extreme counts too.",
    )
    clip_run: int = Field(5, ge=1, description="Consecutive samples at a packet's extreme that mean clipping.")
    clip_hold_s: float = Field(
        60.0,
        ge=0.0,
        description="After clipping, a velocity sensor ranks below its site's accelerometer this long "
        "(the accelerometer's triggers count instead).",
    )
    site_live_s: float = Field(
        10.0,
        gt=0.0,
        description="A sensor scored within this much data time is live at its site: a site's "
        "accelerometer does not trigger while its velocity sensor is live and unclipped.",
    )
    pick_max_lead_s: float = Field(
        PICK_MAX_LEAD_S,
        gt=0.0,
        description="A trigger's P pick lies at most this long before it (services.common.triggers.picks).",
    )
    retrigger_threshold: float | None = Field(
        None,
        gt=0.0,
        le=1.0,
        description="P probability of a new onset that re-triggers a station inside an episode "
        "(default: the contract's re-trigger level, else its P-pick threshold; see "
        "services.common.triggers.onset).",
    )
    p_rearm_threshold: float | None = Field(
        None,
        ge=0.0,
        le=1.0,
        description="P probability must fall below this after an onset before a new one counts "
        "(default: half the retrigger threshold).",
    )
    retrigger_min_separation_s: float = Field(
        3.0, gt=0.0, description="A new onset lies at least this long after the episode's latest onset."
    )
    retrigger_hold_s: float = Field(
        2.0,
        ge=0.0,
        description="A new onset waits at most this long for the event probability to reach detection.",
    )
    buffer_s: float = Field(
        45.0,
        gt=0.0,
        description="Seconds of data buffered per station ahead of the next chunk (at least max-gap-s + "
        f"max-component-wait-s + {PIECE_S:g} s + 2 chunks).",
    )
    history_s: float = Field(
        10.0, ge=0.0, description="Seconds of scored data kept per station, to tell duplicates from late data."
    )
    max_gap_s: float = Field(
        20.0, gt=0.0, description="Longer gaps restart a station (state reset); a component silent this long is dead."
    )
    max_component_wait_s: float = Field(
        10.0,
        ge=0.0,
        description="Seconds of data on the other components after which a missing one is gap/dead-filled.",
    )
    max_future_s: float = Field(600.0, gt=0.0, description="Packets ending further than this past the wall clock are refused.")
    resync_packets: int = Field(3, ge=1, description="Consistent packets needed to accept a station's time jump.")
    max_batch: int = Field(512, ge=1, description="Most stations per model call.")
    max_stations: int = Field(5000, ge=1, description="Most stations buffered at once (more are refused).")


class CoreConfig(CoreTuning):
    """Everything the core runs with: the knobs plus the model contract's facts. The service builds
    it with ``DetectorSettings.core_config`` (knobs as set, facts from contract.json); validated on
    construction (a ValueError names the inconsistency)."""

    state_size: int = Field(ge=1, description="Model state per station (contract).")
    detection_threshold: float = Field(description="Event probability that triggers a station.")
    p_pick_threshold: float = Field(description="P probability a pick needs.")
    warmup_s: float = Field(ge=0.0, description="No trigger this long after a station (re)starts.")
    sampling_rate_hz: int = Field(100, gt=0, description="Model sampling rate (contract).")
    chunk_samples: int = Field(100, description="Samples per scored chunk (the stride).")
    step_samples: int = Field(10, description="Samples per model output step (contract).")
    model_id: str = Field("", description="Model id stamped on every score.")
    model_version: str = Field("", description="Model version stamped on every score.")

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        self.validate()
        return self

    def validate(self) -> None:  # type: ignore[override]  # BaseModel.validate is pydantic v1's, deprecated
        """Raise ValueError on inconsistent values (run on construction; kept for callers)."""
        c = self
        if c.chunk_samples <= 0 or c.step_samples <= 0 or c.chunk_samples % c.step_samples:
            raise ValueError(f"chunk {c.chunk_samples} must be a positive multiple of step {c.step_samples}")
        if c.max_batch < 1 or c.max_stations < 1 or c.resync_packets < 1:
            raise ValueError("max_batch, max_stations and resync_packets must be >= 1")
        chunk_s = c.chunk_samples / c.sampling_rate_hz
        need = c.max_gap_s + c.max_component_wait_s + PIECE_S + 2 * chunk_s
        if c.buffer_s < need:
            raise ValueError(
                f"buffer_s {c.buffer_s} too small: needs >= max_gap_s + max_component_wait_s + {PIECE_S} "
                f"+ 2 chunks = {need:.1f}"
            )
        if not 0.0 < c.detection_threshold <= 1.0 or not 0.0 < c.p_pick_threshold <= 1.0:
            raise ValueError("thresholds must lie in (0, 1]")
        if self.rearm_level > c.detection_threshold:
            raise ValueError("rearm_threshold must not exceed the detection threshold")
        retrigger = self.retrigger_level
        if c.p_rearm_threshold is not None and c.p_rearm_threshold > retrigger:
            raise ValueError(
                f"p_rearm_threshold {c.p_rearm_threshold} must not exceed the retrigger threshold {retrigger}"
            )

    @property
    def retrigger_level(self) -> float:
        """P probability of a new onset that re-triggers inside an episode: the setting, else the P-pick level."""
        return self.p_pick_threshold if self.retrigger_threshold is None else self.retrigger_threshold

    @property
    def rearm_level(self) -> float:
        return self.detection_threshold * 0.5 if self.rearm_threshold is None else self.rearm_threshold

    def samples(self, seconds: float) -> int:
        return int(round(seconds * self.sampling_rate_hz))


@dataclass(frozen=True, slots=True)
class Score:
    """One scored chunk of one station (becomes a StationScore message)."""

    key: str
    network: str
    station: str
    location: str
    channel_prefix: str
    window_start_ns: int
    window_end_ns: int
    probability: float
    triggered: bool
    has_p_onset: bool
    p_onset_ns: int
    p_onset_probability: float
    ingest_time_ns: int
    peak_amplitude: float
    peak_displacement: float  # peak |vertical displacement| (counts*s, or counts*s^2 for accelerometers)
    components: int
    warmed_up: bool
    new_trigger: bool
    model_id: str
    model_version: str


@dataclass(slots=True)
class _Component:
    state: int = UNSEEN
    end: int = 0  # exclusive end of written (real or fill) samples; valid when ALIVE
    last: float = 0.0  # value at end - 1 (hold-last fill)
    real_end: int = 0  # exclusive end of real samples
    ratio: tuple[int, int] | None = None  # (up, down) of the current native stream (None: none yet)
    resampler: Resampler | None = None  # when the stream is not at the model rate
    native_next: int | None = None  # next expected native sample index (stateful front end)


@dataclass(slots=True)
class _Pending:
    """A packet of an unconfirmed discontinuity, kept until confirmed or discarded."""

    packet: Packet
    info: ChannelInfo
    ratio: tuple[int, int]
    j0: int
    j1: int
    tag: int | None


@dataclass
class StationBuffer:
    """Ring buffers, chunk position, picking state and offset bookkeeping of one station."""

    key: str
    network: str
    station: str
    location: str
    channel_prefix: str
    slot: int
    ahead: int
    hist: int
    steps_kept: int
    comps: list[_Component] = field(default_factory=lambda: [_Component() for _ in range(3)])
    next_chunk: int | None = None
    chunks_since_reset: int = 0
    last_ingest_ns: int = 0
    last_fed_mono: int = 0  # caller's clock (ns) at the last packet, for idle eviction
    trig: OnsetState = field(default_factory=OnsetState)  # episode, latest onset (triggers.onset)
    onset_ns: int = 0
    onset_prob: float = 0.0
    pending: list[_Pending] = field(default_factory=list)
    tags: deque[tuple[int, int]] = field(default_factory=deque)  # (tag, end index), fed order
    acceleration: bool = False  # an accelerometer (else a velocity sensor)
    clipped_until: int = -(1 << 62)  # model index until which this (velocity) sensor counts as clipped
    held: bool = False  # a trigger of this sensor is being held back for the site's preferred one

    def __post_init__(self) -> None:
        self.size = self.ahead + self.hist
        self.data = np.zeros((3, self.size), dtype=np.float32)
        self.real = np.zeros((3, self.size), dtype=bool)
        self.p_hist = np.zeros(self.steps_kept, dtype=np.float32)
        self.p_step = np.full(self.steps_kept, -1, dtype=np.int64)  # absolute step index, -1 = empty
        self.p_pos = 0
        self.reset_step = 0

    # ---- ring helpers -------------------------------------------------------------------------
    def _positions(self, j0: int, j1: int) -> np.ndarray:
        return np.arange(j0, j1) % self.size

    def put(self, row: int, j0: int, values: np.ndarray | float, real: bool) -> None:
        """Write [j0, j0+n) of one component (values: array of n, or a scalar with j1 implied)."""
        n = len(values) if isinstance(values, np.ndarray) else 0
        self._put_span(row, j0, j0 + n, values, real)

    def _put_span(self, row: int, j0: int, j1: int, values: np.ndarray | float, real: bool) -> None:
        if j1 <= j0:
            return
        p = j0 % self.size
        n = j1 - j0
        first = min(n, self.size - p)
        if isinstance(values, np.ndarray):
            self.data[row, p : p + first] = values[:first]
            if first < n:
                self.data[row, : n - first] = values[first:]
        else:
            self.data[row, p : p + first] = values
            if first < n:
                self.data[row, : n - first] = values
        self.real[row, p : p + first] = real
        if first < n:
            self.real[row, : n - first] = real

    def get(self, row: int, j0: int, j1: int) -> np.ndarray:
        p = j0 % self.size
        n = j1 - j0
        if p + n <= self.size:
            return self.data[row, p : p + n]
        return np.concatenate([self.data[row, p:], self.data[row, : n - (self.size - p)]])

    def clear_span(self, j0: int, j1: int) -> None:
        """Forget all components' samples at indices [j0, j1) (slots about to be reused)."""
        self._put_span(0, j0, j1, 0.0, False)
        self._put_span(1, j0, j1, 0.0, False)
        self._put_span(2, j0, j1, 0.0, False)

    # ---- positions ----------------------------------------------------------------------------
    def scored(self, chunk: int) -> int:
        """First sample index not yet scored."""
        assert self.next_chunk is not None
        return self.next_chunk * chunk

    def real_lead(self) -> int | None:
        ends = [c.real_end for c in self.comps if c.state == ALIVE]
        return max(ends) if ends else None

    def earliest_tag(self, keep_from: int) -> int | None:
        """Smallest tag still needed: data not yet scored, or scored after ``keep_from``."""
        while self.tags and self.tags[0][1] <= keep_from:
            self.tags.popleft()
        tags = [self.tags[0][0]] if self.tags else []
        tags += [p.tag for p in self.pending if p.tag is not None]
        return min(tags) if tags else None


class CoreDetector:
    """Buffers for many stations, a batched stateful scorer and the trigger logic.

    ``feed(packet, tag)`` returns ``None`` or a rejection reason (a metric label); ``score_ready()``
    returns the scores of every chunk that became ready (including any produced while ``feed``
    had to make room). ``tag`` is an opaque position (the Kafka offset) used by
    ``earliest_needed`` so the service knows what it may commit.
    """

    def __init__(self, cfg: CoreConfig, scorer: Scorer) -> None:
        cfg.validate()
        self.cfg = cfg
        self.scorer = scorer
        self.fs = int(cfg.sampling_rate_hz)
        if self.fs != cfg.sampling_rate_hz:
            raise ValueError("the model sampling rate must be a whole number of Hz")
        self.C = cfg.chunk_samples
        self.steps_per_chunk = cfg.chunk_samples // cfg.step_samples
        self.ahead = cfg.samples(cfg.buffer_s)
        self.hist = cfg.samples(cfg.history_s)
        self.max_gap = cfg.samples(cfg.max_gap_s)
        self.wait = cfg.samples(cfg.max_component_wait_s)
        self.warmup = cfg.samples(cfg.warmup_s)
        self.piece = cfg.samples(PIECE_S)
        self.lookback_steps = max(1, cfg.samples(cfg.pick_max_lead_s) // cfg.step_samples)
        self.onset_rule = OnsetRule.from_seconds(
            detection=cfg.detection_threshold,
            rearm_level=cfg.rearm_level,
            rearm_s=cfg.rearm_s,
            retrigger=cfg.retrigger_level,
            p_rearm=cfg.p_rearm_threshold,
            min_separation_s=cfg.retrigger_min_separation_s,
            hold_s=cfg.retrigger_hold_s,
            step_s=cfg.step_samples / cfg.sampling_rate_hz,
        )
        self.stations: dict[str, StationBuffer] = {}
        self.sites: dict[str, set[str]] = {}  # "NET.STA" -> stream keys (velocity and accelerometers)
        self.site_live = max(1, cfg.samples(cfg.site_live_s) // cfg.chunk_samples)
        self.clip_hold = cfg.samples(cfg.clip_hold_s)
        self.states = np.zeros((min(64, cfg.max_stations), cfg.state_size), dtype=np.float32)
        self._free_slots: list[int] = list(range(self.states.shape[0] - 1, -1, -1))
        self._candidates: set[str] = set()
        self._out: list[Score] = []
        self._filters: dict[int, np.ndarray] = {}
        self.displacement = DisplacementBank(cfg.sampling_rate_hz, self.states.shape[0])
        self.counts: Counter[str] = Counter()
        self.batch_sizes: list[int] = []  # sizes of scorer calls since the last take_counts()
        self.batch_keys: list[str] = []

    # ---- time ---------------------------------------------------------------------------------
    def idx_to_ns(self, i: int) -> int:
        return i * NS_PER_S // self.fs

    def ns_to_idx(self, t_ns: int, ratio: tuple[int, int] = (1, 1)) -> int:
        """Nearest sample index of time ``t_ns`` at the rate ``fs * down / up`` (exact integers)."""
        up, down = ratio
        den = up * NS_PER_S
        return (t_ns * self.fs * down + den // 2) // den

    # ---- bookkeeping --------------------------------------------------------------------------
    def take_counts(self) -> tuple[Counter[str], list[int]]:
        """Counters and batch sizes accumulated since the last call (then reset)."""
        counts, sizes = self.counts, self.batch_sizes
        self.counts, self.batch_sizes = Counter(), []
        return counts, sizes

    def _slot(self) -> int:
        if not self._free_slots:
            old = self.states.shape[0]
            new = min(old * 2, self.cfg.max_stations)
            grown = np.zeros((new, self.cfg.state_size), dtype=np.float32)
            grown[:old] = self.states
            self.states = grown
            self.displacement.ensure(new)
            self._free_slots = list(range(new - 1, old - 1, -1))
        return self._free_slots.pop()

    def _station(self, p: Packet) -> StationBuffer | None:
        key = p.key
        st = self.stations.get(key)
        if st is None:
            if len(self.stations) >= self.cfg.max_stations:
                return None
            st = StationBuffer(
                key=key,
                network=p.network,
                station=p.station,
                location=p.location,
                channel_prefix=p.channel[:2],
                slot=self._slot(),
                ahead=self.ahead,
                hist=self.hist,
                steps_kept=max(self.lookback_steps, self.steps_per_chunk),
            )
            self.states[st.slot] = 0.0
            self.displacement.reset(st.slot)
            self.stations[key] = st
            self.sites.setdefault(station_id(p.network, p.station), set()).add(key)
        return st

    def drop_stations(self, keys: Iterable[str]) -> int:
        """Forget stations (partition revoked, idle): their buffers, states and picks."""
        n = 0
        for key in list(keys):
            st = self.stations.pop(key, None)
            if st is None:
                continue
            site = self.sites.get(station_id(st.network, st.station))
            if site is not None:
                site.discard(key)
                if not site:
                    del self.sites[station_id(st.network, st.station)]
            self._free_slots.append(st.slot)
            self._candidates.discard(key)
            n += 1
        return n

    def evict_idle(self, now_ns: int, idle_ns: int) -> list[str]:
        """Drop stations that received nothing for ``idle_ns`` (caller's clock), return their keys."""
        gone = [k for k, st in self.stations.items() if now_ns - st.last_fed_mono > idle_ns]
        self.drop_stations(gone)
        self.counts[C_EVICTED] += len(gone)
        return gone

    def earliest_needed(self, key: str) -> int | None:
        """Smallest tag of this station still needed to rebuild unscored data + warm-up history."""
        st = self.stations.get(key)
        if st is None:
            return None
        keep_from = st.scored(self.C) - self.warmup if st.next_chunk is not None else -(1 << 62)
        return st.earliest_tag(keep_from)

    def backlog(self) -> int:
        """Stations with a chunk ready to score right now."""
        return sum(1 for k in self._candidates if self._ready(self.stations[k]))

    # ---- intake -------------------------------------------------------------------------------
    def feed(
        self, p: Packet, tag: int | None = None, now_ns: int | None = None, mono_ns: int = 0
    ) -> str | None:
        """Take one packet; return None if (at least partly) accepted, else the rejection reason."""
        cfg = self.cfg
        info = classify_channel(p.channel)
        if isinstance(info, str):
            return info
        n = len(p.data)
        if n == 0:
            return "empty"
        ratio = resample_ratio(float(p.sampling_rate), self.fs)
        if isinstance(ratio, str):
            return ratio
        up, down = ratio
        data = np.asarray(p.data)
        kind = data.dtype.kind
        if kind == "f" and data.dtype.itemsize == 4:
            if not np.isfinite(data).all():
                return "non_finite"
        elif kind not in "iu":
            with np.errstate(over="ignore", invalid="ignore"):
                data = data.astype(np.float32)  # float64 beyond float32's range becomes inf
            if not np.isfinite(data).all():
                return "non_finite"
        if now_ns is not None and p.start_time_ns + (n * NS_PER_S * up) // (down * self.fs) > now_ns + int(
            cfg.max_future_s * NS_PER_S
        ):
            return "future_time"
        st = self._station(p)
        if st is None:
            return "too_many_stations"
        st.last_fed_mono = mono_ns
        st.acceleration = info.quantity == ACCELERATION
        n0 = self.ns_to_idx(int(p.start_time_ns), ratio)
        j0 = -((-n0 * up) // down)
        j1 = ((n0 + n) * up) // down
        if not st.acceleration and self._clipped(data):
            self.counts[C_CLIPPED] += 1
            st.clipped_until = max(st.clipped_until, j1 + self.clip_hold)
        if st.next_chunk is not None and self._discontinuous(st, j0, j1):
            return self._pending_jump(st, _Pending(p, info, ratio, j0, j1, tag))
        if st.pending:
            self.counts[C_TIME_JUMP] += len(st.pending)
            st.pending.clear()
        return self._accept(st, p, info, ratio, n0, data, tag)

    def _clipped(self, data: np.ndarray) -> bool:
        """Samples at the digitiser's limit: beyond ``clip_counts``, or a flat top: ``clip_run``
        consecutive samples exactly at the packet's extreme, well clear of its noise (a quiet
        station's last-bit dither repeats its extremes too, so the extreme must stand out)."""
        a = np.abs(data)
        if float(a.max()) >= self.cfg.clip_counts:
            return True
        x = np.asarray(data, dtype=np.float64)
        med = float(np.median(x))
        dev = np.abs(x - med)
        m = float(dev.max())
        at = dev == m
        if int(at.sum()) < self.cfg.clip_run or m < max(64.0, 3.0 * float(np.median(dev))):
            return False
        idx = np.flatnonzero(at)
        breaks = np.flatnonzero(np.diff(idx) != 1)
        runs = np.diff(np.concatenate([[-1], breaks, [len(idx) - 1]]))
        return int(runs.max()) >= self.cfg.clip_run

    def _outranked(self, st: StationBuffer, k: int) -> bool:
        """Another live sensor at this site is preferred: velocity unclipped > accelerometer > clipped
        velocity (one trigger per site; the accelerometer takes over when the velocity sensor clips)."""
        keys = self.sites.get(station_id(st.network, st.station), ())
        if len(keys) < 2:
            return False
        a = k * self.C

        def rank(s: StationBuffer) -> int:
            return 1 if s.acceleration else (2 if s.clipped_until > a else 0)

        mine = rank(st)
        for key in keys:
            other = self.stations.get(key)
            if other is None or other is st or other.next_chunk is None:
                continue
            if other.next_chunk >= k - self.site_live and rank(other) < mine:
                return True
        return False

    def _discontinuous(self, st: StationBuffer, j0: int, j1: int) -> bool:
        scored = st.scored(self.C)
        lead = st.real_lead()
        top = max(scored, lead if lead is not None else scored)
        return j0 > top + self.max_gap or j1 < scored - self.max_gap - self.hist

    def _pending_jump(self, st: StationBuffer, pend: _Pending) -> str | None:
        if st.pending:
            lo = min(x.j0 for x in st.pending) - self.max_gap
            hi = max(x.j1 for x in st.pending) + self.max_gap
            if not lo <= pend.j0 <= hi:
                self.counts[C_TIME_JUMP] += len(st.pending)
                st.pending.clear()
        st.pending.append(pend)
        if len(st.pending) < self.cfg.resync_packets:
            return None  # held: not rejected (yet)
        confirmed = sorted(st.pending, key=lambda x: x.j0)
        # Data buffered before the jump is scored first (fast replays deliver both sides in one
        # poll): only then is the station restarted.
        while (
            st.next_chunk is not None
            and (lead := st.real_lead()) is not None
            and ((st.next_chunk + 1) * self.C <= lead)
        ):
            self._score_batch([st], self._out)
        self._reset(st)
        for x in confirmed:
            d = np.asarray(x.packet.data)
            if not np.issubdtype(d.dtype, np.integer):
                d = d.astype(np.float32)
            self._accept(
                st, x.packet, x.info, x.ratio, self.ns_to_idx(x.packet.start_time_ns, x.ratio), d, x.tag
            )
        return None

    def _reset(self, st: StationBuffer) -> None:
        """Start a station afresh (confirmed discontinuity): zero state, empty buffers, warm up again."""
        self.counts[C_RESETS] += 1
        st.comps = [_Component() for _ in range(3)]
        st.next_chunk = None
        st.chunks_since_reset = 0
        st.trig.reset()
        st.pending = []
        st.tags.clear()
        st.data[:] = 0.0
        st.real[:] = False
        st.p_step[:] = -1
        self.states[st.slot] = 0.0
        self.displacement.reset(st.slot)

    def _accept(
        self,
        st: StationBuffer,
        p: Packet,
        info: ChannelInfo,
        ratio: tuple[int, int],
        n0: int,
        data: np.ndarray,
        tag: int | None,
    ) -> str | None:
        row = info.row
        c = st.comps[row]
        before = self.counts[C_DUP_SAMPLES], self.counts[C_LATE_SAMPLES]
        wrote = False
        direct = ratio == (1, 1)
        if c.ratio is not None and c.ratio != ratio:
            self.counts[C_RATE_CHANGES] += 1
        if direct:
            c.ratio, c.resampler, c.native_next = ratio, None, None
        elif c.ratio != ratio:
            if c.native_next is not None:
                self.counts[C_FRONT_RESETS] += 1
            c.ratio, c.native_next, c.resampler = ratio, None, Resampler(*ratio)
        step = max(1, (self.piece * ratio[1]) // ratio[0])
        for s in range(0, len(data), step):
            piece = data[s : s + step]
            if direct:
                wrote |= self._write(st, row, n0 + s, piece.astype(np.float32, copy=False))
            else:
                wrote |= self._front(st, c, row, n0 + s, piece)
        st.last_ingest_ns = max(st.last_ingest_ns, p.ingest_time_ns)
        if wrote:
            if tag is not None:
                st.tags.append((tag, c.end))
                if len(st.tags) > MAX_TAGS:
                    st.tags.popleft()
            self._candidates.add(st.key)
            return None
        if self.counts[C_LATE_SAMPLES] > before[1]:
            self.counts[C_LATE_PACKETS] += 1
            return "late"
        if self.counts[C_DUP_SAMPLES] > before[0]:
            self.counts[C_DUP_PACKETS] += 1
            return "duplicate"
        return None  # fully before the station's first chunk: nothing to do

    def _front(self, st: StationBuffer, c: _Component, row: int, n0: int, x: np.ndarray) -> bool:
        """Native samples through the component's resampler, then written.

        Contiguous data continue the filters' state; a gap resets them (no output mixes data
        across it); data overlapping what was already taken are trimmed (counted as duplicates),
        or classified against the model grid when nothing new is left.
        """
        assert c.ratio is not None
        up, down = c.ratio
        x = np.asarray(x, dtype=np.float64)
        if c.native_next is not None and n0 > c.native_next:
            self.counts[C_FRONT_RESETS] += 1
            c.native_next = None
        assert c.resampler is not None
        if c.native_next is None:
            c.resampler.reset()
        elif n0 < c.native_next:
            k = c.native_next - n0
            if k >= len(x):  # nothing new at the native rate: classify against the model grid
                j0, j1 = -((-n0 * up) // down), ((n0 + len(x)) * up) // down
                if st.next_chunk is None:
                    self.counts[C_DUP_SAMPLES] += max(0, j1 - j0)
                else:
                    self._drop_old(st, row, j0, j1, st.scored(self.C))
                return False
            self.counts[C_DUP_SAMPLES] += (k * up) // down
            x = x[k:]
            n0 += k
        c.native_next = n0 + len(x)
        j0, y = c.resampler.push(n0, x)
        if len(y) == 0:
            return False
        return self._write(st, row, j0, np.asarray(y, dtype=np.float32))

    def _drop_old(self, st: StationBuffer, row: int, j0: int, j1: int, scored: int) -> None:
        """Count samples at [j0, j1) (all before ``scored``) as duplicate (were real) or late."""
        c = st.comps[row]
        if j1 <= j0:
            return
        if c.state == UNSEEN:
            return  # before this station's first chunk: not late, just not needed
        lo = max(j0, scored - self.hist)
        dup = 0
        if lo < j1:
            dup = int(st.real[row, st._positions(lo, j1)].sum())
        self.counts[C_DUP_SAMPLES] += dup
        self.counts[C_LATE_SAMPLES] += (j1 - j0) - dup

    def _make_room(self, st: StationBuffer, j1: int) -> None:
        while st.next_chunk is not None and j1 > st.scored(self.C) + self.ahead:
            self.counts[C_FORCED] += 1
            self._candidates.add(st.key)
            if not self._round(self._out):
                break  # cannot happen when CoreConfig.validate() holds; never loop forever

    def _write(self, st: StationBuffer, row: int, j0: int, vals: np.ndarray) -> bool:
        """Write model-rate samples [j0, j0+len) of one component; return True if anything was new."""
        m = len(vals)
        if m == 0:
            return False
        j1 = j0 + m
        if st.next_chunk is None:
            st.next_chunk = j0 // self.C  # the first chunk is backfilled from its first sample
            st.reset_step = st.next_chunk * self.steps_per_chunk
        c = st.comps[row]
        self._make_room(st, j1)
        scored = st.scored(self.C)
        if j0 < scored:
            k = min(scored, j1) - j0
            self._drop_old(st, row, j0, j0 + k, scored)
            vals, j0 = vals[k:], j0 + k
            if j0 >= j1:
                return False
        if c.state != ALIVE:
            if c.state == DEAD:
                self.counts[C_REVIVED] += 1
                # the model restarts this component's statistics: warm up again before triggering
                st.chunks_since_reset = 0
            c.state = ALIVE
            st._put_span(row, scored, j0, float(vals[0]), False)  # backfill from the chunk start
            c.end = c.real_end = j0
            c.last = float(vals[0])
        e = c.end
        if j0 > e:
            self.counts[C_GAPS] += 1
            self.counts[C_GAP_SAMPLES] += j0 - e
            st._put_span(row, e, j0, c.last, False)
            e = c.end = j0
        new = False
        if j0 < e:
            ov = min(j1, e)
            pos = st._positions(j0, ov)
            was = st.real[row, pos]
            dup = int(was.sum())
            self.counts[C_DUP_SAMPLES] += dup
            if dup < len(pos):
                fill = ~was
                st.data[row, pos[fill]] = vals[: ov - j0][fill]
                st.real[row, pos[fill]] = True
                self.counts[C_LATE_FILLED] += len(pos) - dup
                new = True
        if j1 > e:
            st.put(row, e, vals[e - j0 :], True)
            c.end = c.real_end = j1
            c.last = float(vals[-1])
            new = True
        return new

    # ---- scoring ------------------------------------------------------------------------------
    def _ready(self, st: StationBuffer) -> bool:
        if st.next_chunk is None:
            return False
        b = (st.next_chunk + 1) * self.C
        lead = st.real_lead()
        if lead is None:
            return False
        if lead >= b + self.wait:
            return True
        for c in st.comps:
            if c.state == UNSEEN or (c.state == ALIVE and c.end < b):
                return False
        return True

    def score_ready(self, max_rounds: int | None = None) -> list[Score]:
        """Score every ready chunk (at most ``max_rounds`` chunks per station); return the scores."""
        out, self._out = self._out, []
        rounds = 0
        while self._round(out):
            rounds += 1
            if max_rounds is not None and rounds >= max_rounds:
                break
        return out

    def _round(self, out: list[Score]) -> bool:
        """Score one chunk of every ready station (batches of max_batch); False when none was ready."""
        ready: list[StationBuffer] = []
        for key in list(self._candidates):
            st = self.stations.get(key)
            if st is not None and self._ready(st):
                ready.append(st)
            else:
                self._candidates.discard(key)
        if not ready:
            return False
        ready.sort(key=lambda s: s.key)
        for i in range(0, len(ready), self.cfg.max_batch):
            self._score_batch(ready[i : i + self.cfg.max_batch], out)
        return True

    def _assemble(self, st: StationBuffer, wave: np.ndarray) -> int:
        """Fill wave (3, C) with the station's next chunk; return the number of live components."""
        C = self.C
        a = st.scored(C)
        b = a + C
        lead = st.real_lead()
        lead = b if lead is None else lead
        live = 0
        for row, c in enumerate(st.comps):
            if c.state == UNSEEN:
                c.state = DEAD  # never arrived within the wait: dead until data shows up
                self.counts[C_DEAD] += 1
            elif c.state == ALIVE and c.end < b:
                if c.real_end <= a and b - c.real_end > self.max_gap:
                    c.state = DEAD  # stopped long ago: zeros from now on
                    self.counts[C_DEAD] += 1
                    st.chunks_since_reset = 0  # a switch-off is no earthquake: warm up again
                else:  # lagging: a gap, hold the last value
                    if c.end == c.real_end:
                        self.counts[C_GAPS] += 1
                    self.counts[C_GAP_SAMPLES] += b - c.end
                    st._put_span(row, c.end, b, c.last, False)
                    c.end = b
            if c.state == ALIVE:
                wave[row] = st.get(row, a, b)
                live += 1
            else:
                wave[row] = 0.0
        return live

    def _score_batch(self, batch: list[StationBuffer], out: list[Score]) -> None:
        C = self.C
        B = len(batch)
        wave = np.empty((B, 3, C), dtype=np.float32)
        live = [self._assemble(st, wave[i]) for i, st in enumerate(batch)]
        slots = np.fromiter((st.slot for st in batch), dtype=np.int64, count=B)
        self.batch_keys = [st.key for st in batch]  # rows of the call in progress (for tracing/tests)
        res = self.scorer(wave, self.states[slots])
        self.states[slots] = res.state
        ev = np.asarray(res.event_prob, dtype=np.float32).reshape(B)
        pp = np.asarray(res.p_prob, dtype=np.float32).reshape(B, self.steps_per_chunk)
        # peak |Z| (demeaned) per station, vectorised
        z = wave[:, 0, :]
        peak = np.abs(z - z.mean(axis=1, keepdims=True)).max(axis=1)
        integ = np.fromiter((integrations_for(st.channel_prefix) for st in batch), dtype=np.int64, count=B)
        disp = self.displacement.peak(slots, z, integ)
        self.counts[C_CHUNKS] += B
        self.batch_sizes.append(B)
        for i, st in enumerate(batch):
            out.append(self._after_score(st, float(ev[i]), pp[i], float(peak[i]), live[i], float(disp[i])))

    def _after_score(
        self, st: StationBuffer, prob: float, pp: np.ndarray, peak: float, live: int, disp: float = 0.0
    ) -> Score:
        cfg, C = self.cfg, self.C
        k = st.next_chunk
        assert k is not None
        a, b = k * C, (k + 1) * C
        # p_prob history (ring of absolute step indices)
        s0 = k * self.steps_per_chunk
        ring = (st.p_pos + np.arange(self.steps_per_chunk)) % len(st.p_hist)
        st.p_hist[ring] = pp
        st.p_step[ring] = s0 + np.arange(self.steps_per_chunk)
        st.p_pos = int(ring[-1] + 1) % len(st.p_hist)
        st.chunks_since_reset += 1
        warm = st.chunks_since_reset * C >= self.warmup
        above = warm and prob >= cfg.detection_threshold
        allowed = True
        if above and not st.trig.episode and self._outranked(st, k):
            # the site's preferred sensor decides (counted; its probability still goes out)
            above = allowed = False
            if not st.held:
                st.held = True
                self.counts[C_SITE_SUPPRESSED] += 1
        elif st.held and prob < cfg.rearm_level:
            st.held = False
        d = decide(self.onset_rule, st.trig, prob, pp, s0, warm, allowed)
        if d.first:
            st.onset_ns, st.onset_prob, onset_step = self._pick(st, s0 + self.steps_per_chunk, a)
            picked(st.trig, onset_step)
            self.counts[C_TRIGGERS] += 1
        elif d.retrigger:  # a new P inside the episode (issue 13): its own onset, never an older pick
            st.onset_ns = self._step_ns(d.onset_step)
            hit = np.flatnonzero(st.p_step == d.onset_step)
            st.onset_prob = float(st.p_hist[hit[0]]) if len(hit) else 0.0
            self.counts[C_TRIGGERS] += 1
            self.counts[C_RETRIGGERS] += 1
        new_trigger = d.new_trigger
        # advance: the slots of [a, b) - hist become the slots of [a, b) + ahead
        st.next_chunk = k + 1
        st.clear_span(a + self.ahead, b + self.ahead)
        return Score(
            key=st.key,
            network=st.network,
            station=st.station,
            location=st.location,
            channel_prefix=st.channel_prefix,
            window_start_ns=self.idx_to_ns(a),
            window_end_ns=self.idx_to_ns(b),
            probability=prob,
            triggered=above,
            has_p_onset=above,
            p_onset_ns=st.onset_ns if above else 0,
            p_onset_probability=st.onset_prob if above else 0.0,
            ingest_time_ns=st.last_ingest_ns,
            peak_amplitude=peak,
            peak_displacement=disp,
            components=live,
            warmed_up=warm,
            new_trigger=new_trigger,
            model_id=cfg.model_id,
            model_version=cfg.model_version,
        )

    def _step_ns(self, step: int) -> int:
        """Time of the centre of P-curve step ``step``."""
        n = self.cfg.step_samples
        return (step * n * 2 + n) * NS_PER_S // (2 * self.fs)  # half-samples -> ns

    def _pick(self, st: StationBuffer, end_step: int, chunk_start: int) -> tuple[int, float, int]:
        """P onset of a first trigger: ``triggers.onset.first_pick`` within ``pick_max_lead_s`` before
        the trigger and after the station's latest onset (``triggers.picks``), else the chunk start.
        Returns (ns, probability, step)."""
        lo = max(end_step - self.lookback_steps, st.reset_step, st.trig.last_onset + 1)
        got = first_pick(st.p_step, st.p_hist, lo, end_step, self.cfg.p_pick_threshold)
        if got is None:
            return self.idx_to_ns(chunk_start), 0.0, chunk_start // self.cfg.step_samples
        return self._step_ns(got[0]), got[1], got[0]
