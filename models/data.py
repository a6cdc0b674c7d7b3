"""Real labelled recordings (nc_phasenet npz, stead50 HDF5), the fixed split, and padding with real noise.

Every record is returned as float32 (3, N) in Z, N, E order at 100 Hz with the P sample, the S sample
(-1 when unknown) and which components are live (a single-component EHZ station has N and E dead,
i.e. all zeros, as the live system sees it).

The split is by file name and deterministic: a SHA-1 of the name orders the files of each set and
fixed fractions go to train / val / test. ``models/splits/{train,val,test}.txt`` hold the result.
"""

from __future__ import annotations

import csv
import hashlib
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from models.exceptions import DataError

FS = 100.0
COMPONENTS = ("Z", "N", "E")
SPLITS_DIR = Path(__file__).parent / "splits"
SPLIT_FRACTIONS = (0.70, 0.15, 0.15)
# Noise ends this many samples before the catalogue P pick (pick uncertainty).
NOISE_MARGIN = 50


@dataclass(frozen=True)
class Record:
    """One real 3-component recording with its P (and S) pick."""

    key: str  # "<set>/<file or trace name>", the name used in the split files
    wave: np.ndarray  # float32 (3, N), Z N E, raw counts
    p: int  # P sample
    s: int  # S sample or -1
    live: tuple[bool, bool, bool]
    # acceleration of a real accelerometer network (openeew_mx dev, resampled to 100 Hz by the
    # detector's resampler): no further network variant is applied to it
    acc: bool = False
    # "noise": real noise only (between earthquakes); ``p`` = its length, every stream ends before it
    kind: str = "event"

    @property
    def noise(self) -> np.ndarray:
        """The real pre-P noise of this recording (3, p - NOISE_MARGIN)."""
        return self.wave[:, : max(self.p - NOISE_MARGIN, 0)]

    @property
    def three_component(self) -> bool:
        return all(self.live)


def _to_zne(data: np.ndarray, names: list[str]) -> np.ndarray:
    """Columns named by ``names`` (e.g. ['DPE','DPN','DPZ'] or ['EHZ']) -> (3, N) in Z, N, E."""
    out = np.zeros((3, data.shape[0]), dtype=np.float32)
    if len(names) == data.shape[1]:
        for col, name in enumerate(names):
            comp = {"Z": 0, "N": 1, "1": 1, "E": 2, "2": 2}.get(name[-1:].upper())
            if comp is None:
                raise DataError(f"unknown component in channel {name!r}")
            out[comp] = data[:, col]
        return out
    if len(names) == 1:
        # A single channel stored in a 3-column array: the one non-zero column is that channel.
        live = np.flatnonzero(np.abs(data).max(axis=0) > 0)
        comp = {"Z": 0, "N": 1, "E": 2}.get(names[0][-1:].upper())
        if comp is None or len(live) > 1:
            raise DataError(f"cannot map single channel {names[0]!r} with live columns {live}")
        if len(live) == 1:
            out[comp] = data[:, live[0]]
        return out
    raise DataError(f"{len(names)} channel names for {data.shape[1]} columns")


def _live(wave: np.ndarray) -> tuple[bool, bool, bool]:
    amp = np.abs(wave).max(axis=1)
    return (bool(amp[0] > 0), bool(amp[1] > 0), bool(amp[2] > 0))


def load_npz_dir(root: Path) -> list[Record]:
    """nc_phasenet layout: ``root/waveform_train/*.npz`` (or npz files in ``root`` itself)."""
    root = Path(root)
    files = sorted((root / "waveform_train").glob("*.npz")) or sorted(root.glob("*.npz"))
    if not files:
        raise DataError(f"no npz files under {root}")
    prefix = root.name
    out = []
    for f in files:
        with np.load(f) as d:
            names = str(d["channels"]).split("_")
            wave = _to_zne(np.asarray(d["data"], dtype=np.float64), names)
            p = int(d["itp"])
            s = int(d["its"]) if "its" in d.files else -1
        if p <= 0 or p >= wave.shape[1]:
            raise DataError(f"{f}: P sample {p} outside the record")
        out.append(Record(f"{prefix}/{f.name}", wave, p, s if s > 0 else -1, _live(wave)))
    return out


def load_hdf5_dir(root: Path) -> list[Record]:
    """stead50 layout: ``root/waveforms.hdf5`` (traces E, N, Z) + ``root/metadata.csv``."""
    import h5py

    root = Path(root)
    meta = {r["trace_name"]: r for r in csv.DictReader(open(root / "metadata.csv", newline=""))}
    prefix = root.name
    out = []
    with h5py.File(root / "waveforms.hdf5", "r") as h:
        for name in sorted(meta):
            ds = None
            for group in ("data", "earthquake/local", "earthquake"):
                if group in h and name in h[group]:
                    ds = h[group][name]
                    break
            if ds is None:
                raise DataError(f"trace {name} not found in {root / 'waveforms.hdf5'}")
            wave = _to_zne(np.asarray(ds[:], dtype=np.float64), ["E", "N", "Z"])
            row = meta[name]
            p = int(round(float(row["p_arrival_sample"])))
            s_raw = row.get("s_arrival_sample") or ""
            s = int(round(float(s_raw))) if s_raw not in ("", "None", "nan") else -1
            out.append(Record(f"{prefix}/{name}", wave, p, s if s > 0 else -1, _live(wave)))
    return out


def load_dataset(root: Path) -> list[Record]:
    """Either layout, chosen by what is in ``root``."""
    root = Path(root)
    if (root / "waveforms.hdf5").exists():
        return load_hdf5_dir(root)
    return load_npz_dir(root)


# Screening of the pre-P "noise" for other earthquakes (see ``screen_noise``).
BURST_RATIO = 5.0  # a second whose peak exceeds this many times the record's median second is a burst
BURST_SETTLE = 500  # samples after a burst's last second that are not used as noise either


def noise_bursts(rec: Record) -> np.ndarray:
    """Seconds of the pre-P noise that hold an earthquake-like burst (indices from the record start).

    Per second and component: peak of |x - mean of that second|. A live second (some component not
    constant) whose peak exceeds ``BURST_RATIO`` times that component's median over the live seconds,
    and whose previous second was live too (a station coming alive after a dead stretch is noise the
    model must handle, not an event), is hot; runs of two or more hot seconds are bursts (a single
    spike is noise the model must handle too). Records with fewer than 5 live seconds are not
    screened.
    """
    x = rec.noise.astype(np.float64)
    n_s = x.shape[1] // 100
    if n_s < 5:
        return np.zeros(0, dtype=int)
    sec = x[:, : n_s * 100].reshape(3, n_s, 100)
    peak = np.abs(sec - sec.mean(axis=2, keepdims=True)).max(axis=2)  # (3, n_s)
    live = peak > 0
    any_live = live.any(axis=0)
    if any_live.sum() < 5:
        return np.zeros(0, dtype=int)
    base = np.array([np.median(p[lv]) if lv.any() else np.inf for p, lv in zip(peak, live, strict=True)])
    hot = ((peak > BURST_RATIO * base[:, None]) & live).any(axis=0)
    prev_live = np.concatenate([[True], any_live[:-1]])
    hot &= prev_live
    # an earthquake lasts: only runs of at least two hot seconds count (single spikes are noise)
    run = hot & (np.concatenate([hot[1:], [False]]) | np.concatenate([[False], hot[:-1]]))
    return np.flatnonzero(run)


def screen_noise(records: list[Record]) -> tuple[list[Record], list[str]]:
    """Drop the part of each record's pre-P noise up to its last earthquake-like burst (+5 s).

    The labelled sets' pre-P segments sometimes hold other, smaller earthquakes (e.g. Geysers
    microseismicity) or the coda of an earlier one; as negatives they teach a detector to ignore
    small events and, in evaluation, set the false-alarm threshold on real earthquakes. Such a record
    keeps its event and the clean noise after the burst (history before it is padded with donor
    noise as for any short record). Returns (records, keys of the trimmed records).
    """
    out, trimmed = [], []
    for rec in records:
        bursts = noise_bursts(rec)
        if not len(bursts):
            out.append(rec)
            continue
        cut = min((int(bursts[-1]) + 1) * 100 + BURST_SETTLE, rec.p - NOISE_MARGIN - 100)
        s = rec.s - cut if rec.s > 0 else -1
        out.append(replace(rec, wave=np.ascontiguousarray(rec.wave[:, cut:]), p=rec.p - cut, s=s))
        trimmed.append(rec.key)
    return out, trimmed


def default_datasets(shared: Path) -> list[Path]:
    return [Path(shared) / "data" / "nc_phasenet", Path(shared) / "data" / "stead50"]


def _rank(key: str) -> str:
    return hashlib.sha1(key.encode()).hexdigest()


def make_split(keys: list[str]) -> dict[str, list[str]]:
    """Deterministic split by file name, per set (the part of the key before '/')."""
    by_set: dict[str, list[str]] = {}
    for k in keys:
        by_set.setdefault(k.split("/", 1)[0], []).append(k)
    split: dict[str, list[str]] = {"train": [], "val": [], "test": []}
    for _, ks in sorted(by_set.items()):
        ks = sorted(ks, key=_rank)
        n_val = int(round(SPLIT_FRACTIONS[1] * len(ks)))
        n_test = int(round(SPLIT_FRACTIONS[2] * len(ks)))
        split["test"] += ks[:n_test]
        split["val"] += ks[n_test : n_test + n_val]
        split["train"] += ks[n_test + n_val :]
    return {k: sorted(v) for k, v in split.items()}


def write_split(split: dict[str, list[str]], folder: Path = SPLITS_DIR) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name, keys in split.items():
        (folder / f"{name}.txt").write_text("".join(k + "\n" for k in keys))


def read_split(name: str, folder: Path = SPLITS_DIR) -> set[str]:
    path = folder / f"{name}.txt"
    if not path.exists():
        raise DataError(f"split file {path} missing (run `eew model train` once to write it)")
    return {line.strip() for line in path.read_text().splitlines() if line.strip()}


def select(records: list[Record], split: str | None, folder: Path = SPLITS_DIR) -> list[Record]:
    """Records of one split (None: all). Records of a set absent from the split files are kept
    only when ``split`` is None, so a foreign dataset is evaluated whole with ``--split all``."""
    if split is None or split == "all":
        return list(records)
    keys = read_split(split, folder)
    return [r for r in records if r.key in keys]


# ---------------------------------------------------------------- real-noise padding


def noise_std(rec: Record) -> np.ndarray:
    """Per-component std of the record's own pre-P noise (0 for dead components)."""
    n = rec.noise
    if n.shape[1] < 20:
        n = rec.wave[:, : max(rec.p, 2)]
    return n.std(axis=1).astype(np.float64)


def _crossfade_join(a: np.ndarray, b: np.ndarray, n: int) -> np.ndarray:
    """Join two uncorrelated noise segments with an equal-power crossfade of n samples."""
    if a.shape[1] == 0:
        return b
    n = min(n, a.shape[1], b.shape[1])
    if n <= 0:
        return np.concatenate([a, b], axis=1)
    th = np.linspace(0.0, np.pi / 2, n)
    mid = a[:, -n:] * np.cos(th) + b[:, :n] * np.sin(th)
    return np.concatenate([a[:, :-n], mid, b[:, n:]], axis=1)


MATCH_TAPS = 127  # odd, < PSD_NPERSEG
PSD_NPERSEG = 128
_PSD_CACHE: dict[tuple[str, int], np.ndarray] = {}


def noise_psd(rec: Record) -> np.ndarray:
    """Welch PSD (3, PSD_NPERSEG//2+1) of the record's own pre-P noise, cached by record key."""
    from scipy.signal import welch

    key = (rec.key, rec.wave.shape[1])
    if key not in _PSD_CACHE:
        own = rec.noise if rec.noise.shape[1] >= PSD_NPERSEG else rec.wave[:, : max(rec.p, PSD_NPERSEG)]
        own = own.astype(np.float64)
        _, psd = welch(own - own.mean(axis=1, keepdims=True), nperseg=PSD_NPERSEG, axis=1)
        _PSD_CACHE[key] = psd
    return _PSD_CACHE[key]


def match_spectrum(donor: np.ndarray, psd_donor: np.ndarray, psd_own: np.ndarray) -> np.ndarray:
    """Filter donor noise (3, n) so each component's amplitude spectrum follows the target station's
    own pre-P noise (Welch PSDs; a short zero-phase FIR), trimming the filter's edge samples.

    The result is still the donor's real noise, only rescaled band by band to the station's level, so a
    join between the two does not look like an onset to a detector. A dead component comes out zero.
    """
    from scipy.signal import fftconvolve

    taps = MATCH_TAPS
    out = np.zeros((3, donor.shape[1] - taps + 1))
    win = np.hanning(taps)
    for c in range(3):
        p_own, p_don = psd_own[c], psd_donor[c]
        if p_own.max() <= 0 or p_don.max() <= 0:
            continue
        gain = np.sqrt((p_own + 1e-12 * p_own.max()) / (p_don + 1e-12 * p_don.max()))
        h = np.fft.irfft(gain, n=2 * (len(gain) - 1))
        h = np.roll(h, taps // 2)[:taps] * win
        out[c] = fftconvolve(donor[c] - donor[c].mean(), h, mode="valid")
    return out


def real_noise_pad(rng: np.random.Generator, target: Record, pool: list[Record], length: int) -> np.ndarray:
    """``length`` samples of real noise from OTHER recordings, rescaled per component to the target's
    noise level (per frequency band: see :func:`match_spectrum`) and offset to its pre-P mean.

    Segments are whole pre-P noise spans of distinct recordings (never a repeat, mirror or tile of one;
    a donor whose noise holds a flat stretch (a dropout's zeros or a held value) gives its longest
    live span: a station's history is noise, not a data gap), joined by
    equal-power crossfades. Dead components of the target stay zero.
    """
    want = noise_std(target)
    psd_own = noise_psd(target)
    mean = target.wave[:, : max(min(target.p, 500), 1)].mean(axis=1)
    spans = {r.key: live_span(r.noise) for r in pool if r.key != target.key and r.three_component}
    donors = [r for r in pool if r.key in spans and spans[r.key].shape[1] >= 2 * MATCH_TAPS]
    if not donors:
        raise DataError("no 3-component donor noise for padding")
    order = rng.permutation(len(donors))
    out = np.zeros((3, 0))
    used = 0
    while out.shape[1] < length:
        if used >= len(order):
            raise DataError(f"not enough distinct donor noise for {length} samples")
        donor = donors[order[used]]
        used += 1
        seg = match_spectrum(spans[donor.key].astype(np.float64), noise_psd(donor), psd_own)
        seg = seg - seg.mean(axis=1, keepdims=True)
        sd = seg.std(axis=1, keepdims=True)
        seg = seg / np.where(sd > 0, sd, 1.0) * want[:, None]
        out = _crossfade_join(out, seg, FADE)
    pad = out[:, out.shape[1] - length :] + mean[:, None]
    pad[~np.array(target.live)] = 0.0
    return pad


FADE = 50


def live_span(x: np.ndarray, step: int = 10) -> np.ndarray:
    """The longest stretch of ``x`` (3, N) without a flat step (``step`` samples constant on every
    component: exact zeros of a dropout, or a gap filled with a held value)."""
    n = x.shape[1] // step
    s = x[:, : n * step].reshape(x.shape[0], n, step)
    dead = (s.max(axis=2) == s.min(axis=2)).all(axis=0)
    if not dead.any():
        return x
    edges = np.flatnonzero(np.diff(np.concatenate([[1], dead.astype(int), [1]])))
    starts, stops = edges[::2], edges[1::2]  # live runs [start, stop) in steps
    if not len(starts):
        return x[:, :0]
    k = int(np.argmax(stops - starts))
    return x[:, starts[k] * step : stops[k] * step]


def padded_history(
    rng: np.random.Generator, rec: Record, pool: list[Record], pad: int
) -> tuple[np.ndarray, int]:
    """The record with ``pad`` samples of rescaled real donor noise before it (equal-power crossfade
    over the record's first FADE samples); returns (float32 wave, P index)."""
    if pad <= 0:
        return rec.wave, rec.p
    head = real_noise_pad(rng, rec, pool, pad + FADE)
    wave = _crossfade_join(head, rec.wave.astype(np.float64), FADE)
    return wave.astype(np.float32), rec.p + pad
