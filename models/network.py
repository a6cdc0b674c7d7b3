"""The stateful causal CNN+LSTM detector (torch; training and export only, never on a runtime path).

One call scores a chunk of ``T * step`` raw samples per station and carries a state vector, so that
scoring a stream chunk by chunk equals scoring it in one call:

1. **In-graph normalisation** per channel and per 0.1 s step: a bias-corrected exponential running
   mean (time constant ``tau_mean_s``) removes DC offsets; a bias-corrected running mean-absolute
   level (``tau_level_s``) of the demeaned signal, taken *before* the current step, divides the
   samples; ``sign(z) * log1p(|z|)`` compresses what is left, so amplitudes over many orders of
   magnitude map to a small range. A zero state (step counter 0) means "new station": the
   statistics start from the first data. A dead component (all zeros) stays zero.
2. **CNN** over the normalised samples (causal: its left context, the last ``context`` normalised
   samples, travels in the state), compressing 100 Hz to 10 Hz steps, then a causal conv over steps.
3. **Unidirectional LSTM** over the steps (h, c in the state), and two heads per step: event
   logit (earthquake signal present at the end of the step) and P-onset logit (P in this step).

State layout (float32, ``state_size`` wide): ``[n, mean_acc(3), level_acc(3), context(3*K), h(H),
c(H), reserved zeros]``; see :meth:`StreamingDetector.state_layout`.
"""

from __future__ import annotations

import math

import torch
from torch import nn


class StreamingDetector(nn.Module):
    """Causal CNN+LSTM with the streaming state packed in one vector."""

    def __init__(
        self,
        hidden: int = 64,
        c1: int = 16,
        c2: int = 24,
        c3: int = 48,
        step: int = 10,
        fs: float = 100.0,
        tau_mean_s: float = 5.0,
        tau_level_s: float = 10.0,
        state_size: int = 384,
        eps: float = 1e-4,
        n_cap: float = 1e6,
        rel_floor: float = 2e-6,
        head_hidden: int = 0,
        component_start: bool = True,
        highpass: bool = False,
    ) -> None:
        super().__init__()
        # statistics of each component restart after a dead (all-zero) step: a component that comes
        # alive is normalised like a new station's, not against zeros or older noise
        self.component_start = component_start
        # three more input channels: the first difference of each component, normalised by its own
        # running level. Microseisms (0.1-0.3 Hz) dominate the raw level at quiet stations and can
        # hide a small local event's P, which stands out once the low frequencies are suppressed.
        if highpass and not component_start:
            raise ValueError("highpass needs component_start")
        self.highpass = highpass
        self.n_in = 6 if highpass else 3
        self.step = step
        self.fs = fs
        self.hidden = hidden
        self.eps = eps
        self.rel_floor = rel_floor
        self.n_cap = n_cap
        steps_per_s = fs / step
        self.a_mean = math.exp(-1.0 / (tau_mean_s * steps_per_s))
        self.a_level = math.exp(-1.0 / (tau_level_s * steps_per_s))
        self.tau_mean_s = tau_mean_s
        self.tau_level_s = tau_level_s
        # conv1 (k=7) + conv2 (k=5) consume 10 samples of left context; the step conv (k=3) needs two
        # more steps, so the patching conv (k=step, stride=step) stays aligned to the step grid.
        k1, k2, ks = 7, 5, 3
        assert (k1 - 1) + (k2 - 1) == step
        self.context = (k1 - 1) + (k2 - 1) + (ks - 1) * step
        self.conv1 = nn.Conv1d(self.n_in, c1, k1)
        self.conv2 = nn.Conv1d(c1, c2, k2)
        self.patch = nn.Conv1d(c2, c3, step, stride=step)
        self.stepconv = nn.Conv1d(c3, c3, ks)
        self.lstm = nn.LSTM(c3, hidden, batch_first=True)
        self.head_hidden = head_hidden
        if head_hidden:
            # unbounded heads over the LSTM output and the step features: logits are not capped by
            # the LSTM's tanh-bounded output, so confident events separate from the noise tail
            self.head_event = nn.Sequential(
                nn.Linear(hidden + c3, head_hidden), nn.ReLU(), nn.Linear(head_hidden, 1)
            )
            self.head_p = nn.Sequential(
                nn.Linear(hidden + c3, head_hidden), nn.ReLU(), nn.Linear(head_hidden, 1)
            )
        else:
            self.head_event = nn.Linear(hidden, 1)
            self.head_p = nn.Linear(hidden, 1)
        self.act = nn.ReLU()
        used = 7 + self.n_in * self.context + 2 * hidden + 3 + (6 if highpass else 0)
        if used > state_size:
            raise ValueError(f"state_size {state_size} < {used} needed")
        self.state_size = state_size
        self.state_used = used

    def state_layout(self) -> dict[str, list[int]]:
        """Slices [start, stop) of each part of the state vector."""
        k3 = self.n_in * self.context
        o = 7 + k3
        lay = {
            "n_steps": [0, 1],
            "mean_acc": [1, 4],
            "level_acc": [4, 7],
            "context": [7, o],
            "lstm_h": [o, o + self.hidden],
            "lstm_c": [o + self.hidden, o + 2 * self.hidden],
            "component_steps": [o + 2 * self.hidden, o + 2 * self.hidden + 3],
        }
        r = o + 2 * self.hidden + 3
        if self.highpass:
            lay["last_sample"] = [r, r + 3]
            lay["diff_level_acc"] = [r + 3, r + 6]
            r += 6
        lay["reserved"] = [r, self.state_size]
        return lay

    @staticmethod
    def _decay(x: torch.Tensor, a: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """For a chunk of T steps: causal mask tri[i, j] = (j <= i), decay weights dec[i, j] =
        (1-a) a^(i-j) on it, and the carry a^(i+1) of the state before the chunk."""
        t = x.shape[-1]
        idx = torch.arange(t, device=x.device, dtype=x.dtype)
        diff = idx.unsqueeze(1) - idx.unsqueeze(0)  # i - j
        tri = (diff >= 0).to(x.dtype)
        dec = tri * (1.0 - a) * torch.exp(torch.clamp(diff, min=0.0) * math.log(a))
        carry = torch.exp((idx + 1.0) * math.log(a))
        return tri, dec, carry

    @classmethod
    def _ema(cls, x: torch.Tensor, acc0: torch.Tensor, a: float) -> torch.Tensor:
        """Unnormalised EMA over the last axis: u_t = a u_{t-1} + (1-a) x_t, from u_0 = acc0.

        Computed in closed form with a (T, T) decay matrix so the graph needs no loop and works for
        any chunk length T; x (B, 3, T), acc0 (B, 3) -> (B, 3, T).
        """
        _, dec, carry = cls._decay(x, a)
        return torch.matmul(x, dec.transpose(0, 1)) + acc0.unsqueeze(-1) * carry

    @classmethod
    def _ema_runs(
        cls, x: torch.Tensor, acc0: torch.Tensor, a: float, runs: torch.Tensor, live: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``_ema`` restarted at every dead step, plus the live-step count of the current run.

        ``runs`` (B, 3, T) is the number of dead steps up to and including each step (a run is the
        span after the last dead step): only samples of the same run contribute, and ``acc0`` only
        while no dead step has been seen in this chunk. Returns (EMA (B, 3, T), live steps of the
        current run so far (B, 3, T), not counting the carried state).
        """
        tri, dec, carry = cls._decay(x, a)
        same = (runs.unsqueeze(-1) == runs.unsqueeze(-2)).to(x.dtype)  # (B, 3, T, T) [i, j]
        carry = carry * (runs < 0.5).to(x.dtype)  # (B, 3, T)
        ema = torch.matmul(same * dec, x.unsqueeze(-1)).squeeze(-1) + acc0.unsqueeze(-1) * carry
        count = torch.matmul(same * tri, live.unsqueeze(-1)).squeeze(-1)
        return ema, count

    def _level_before(
        self, acc0: torch.Tensor, acc: torch.Tensor, n_c: torch.Tensor, e: torch.Tensor
    ) -> torch.Tensor:
        """Level before each step: the level EMA ``acc`` at the previous step, bias-corrected for the
        ``n_c`` steps of the run; the very first step of a new station (or component) has no history
        and uses its own level ``e``."""
        prev_acc = torch.cat([acc0.unsqueeze(-1), acc[:, :, :-1]], dim=-1)
        n_prev = n_c - 1.0
        den = torch.clamp(1.0 - torch.exp(n_prev * math.log(self.a_level)), min=1e-12)
        return torch.where(n_prev > 0.5, prev_acc / den, e)

    def normalise(self, wave: torch.Tensor, state: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Raw counts (B, 3, T*step) -> compressed normalised samples, new statistics."""
        b = wave.shape[0]
        xs = wave.reshape(b, 3, -1, self.step)
        n0 = state[:, 0:1]  # (B, 1)
        m_acc0 = state[:, 1:4]
        l_acc0 = state[:, 4:7]
        t_idx = torch.arange(xs.shape[2], device=wave.device, dtype=wave.dtype) + 1.0  # 1..T
        n_t = n0 + t_idx.unsqueeze(0)  # steps seen after each step, (B, T)
        lm = math.log(self.a_mean)
        if self.component_start:
            # A dead step (all samples exactly zero) restarts that component's statistics: a component
            # that comes alive (at a new station, or after a dead stretch) is normalised from its first
            # live step like a new station's, never against the zeros or the noise before them.
            c0, c1 = self.state_layout()["component_steps"]
            nc0 = state[:, c0:c1].unsqueeze(-1)  # live steps of each component's current run
            dead = (xs.abs().amax(dim=-1) == 0).to(wave.dtype)  # (B, 3, T)
            runs = torch.cumsum(dead, dim=-1)
            m_acc, count = self._ema_runs(xs.mean(-1), m_acc0, self.a_mean, runs, 1.0 - dead)
            n_c = count + nc0 * (runs < 0.5).to(wave.dtype)
        else:
            runs = None
            m_acc = self._ema(xs.mean(-1), m_acc0, self.a_mean)
            n_c = n_t.unsqueeze(1).expand(b, 3, -1)
        mean = m_acc / torch.clamp(1.0 - torch.exp(n_c * lm), min=1e-12)
        y = xs - mean.unsqueeze(-1)
        e = y.abs().mean(-1)  # (B, 3, T)
        if runs is not None:
            l_acc, _ = self._ema_runs(e, l_acc0, self.a_level, runs, 1.0 - dead)
        else:
            l_acc = self._ema(e, l_acc0, self.a_level)
        level_prev = self._level_before(l_acc0, l_acc, n_c, e)
        # floor: eps counts plus a tiny fraction of the DC level, so a stuck (flat, non-zero) component
        # normalises to ~0 instead of amplified float32 round-off
        floor = self.eps + self.rel_floor * mean.abs()
        z = y / (level_prev + floor).unsqueeze(-1)
        z = torch.sign(z) * torch.log1p(z.abs())
        z = z.reshape(b, 3, -1)
        extra: tuple[torch.Tensor, ...] = ()
        if self.highpass:
            zd, last, ld_acc = self._normalise_diff(wave, state, xs, dead, runs, n_c)
            z = torch.cat([z, zd], dim=1)
            extra = (last, ld_acc)
        return (z, m_acc[:, :, -1], l_acc[:, :, -1], n_t[:, -1:], n_c[:, :, -1], *extra)

    def _normalise_diff(
        self,
        wave: torch.Tensor,
        state: torch.Tensor,
        xs: torch.Tensor,
        dead: torch.Tensor,
        runs: torch.Tensor,
        n_c: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """First differences (B, 3, N), compressed like the samples: divided by their running mean
        absolute level before the step (time constant tau_level_s, restarting with the component).
        A difference across a dead step or the start of a component's run is 0, not a jump."""
        b, _, t, k = xs.shape
        lay = self.state_layout()
        lk0, lk1 = lay["last_sample"]
        dk0, dk1 = lay["diff_level_acc"]
        s0, s1 = lay["component_steps"]
        last0 = state[:, lk0:lk1].unsqueeze(-1)  # (B, 3, 1)
        ld_acc0 = state[:, dk0:dk1]
        fresh = (state[:, s0:s1] < 0.5).to(wave.dtype).unsqueeze(-1)  # no live step in this run yet
        dead_s = dead.unsqueeze(-1).expand(b, 3, t, k).reshape(b, 3, -1)
        prev_dead = torch.cat([fresh, dead_s[:, :, :-1]], dim=-1)
        prev = torch.cat([last0, wave[:, :, :-1]], dim=-1)
        d = (wave - prev) * (1.0 - prev_dead) * (1.0 - dead_s)
        ds = d.reshape(b, 3, t, k)
        e = ds.abs().mean(-1)
        ld_acc, _ = self._ema_runs(e, ld_acc0, self.a_level, runs, 1.0 - dead)
        level_prev = self._level_before(ld_acc0, ld_acc, n_c, e)
        zd = ds / (level_prev + self.eps).unsqueeze(-1)
        zd = torch.sign(zd) * torch.log1p(zd.abs())
        return zd.reshape(b, 3, -1), wave[:, :, -1], ld_acc[:, :, -1]

    def forward_logits(
        self, wave: torch.Tensor, state: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """wave (B, 3, T*step), state (B, S) -> event logits (B, T), P logits (B, T), state (B, S)."""
        b = wave.shape[0]
        lay = self.state_layout()
        z, m_acc, l_acc, n_new, nc_new, *extra = self.normalise(wave, state)
        c0, c1 = lay["context"]
        ctx = state[:, c0:c1].reshape(b, self.n_in, self.context)
        full = torch.cat([ctx, z], dim=-1)
        new_ctx = full[:, :, -self.context :]
        h = self.act(self.conv1(full))
        h = self.act(self.conv2(h))
        h = self.act(self.patch(h))
        h = self.act(self.stepconv(h))  # (B, C3, T)
        h0 = state[:, lay["lstm_h"][0] : lay["lstm_h"][1]].unsqueeze(0).contiguous()
        cc0 = state[:, lay["lstm_c"][0] : lay["lstm_c"][1]].unsqueeze(0).contiguous()
        out, (hn, cn) = self.lstm(h.transpose(1, 2), (h0, cc0))
        if self.head_hidden:
            out = torch.cat([out, h.transpose(1, 2)], dim=-1)
        ev = self.head_event(out).squeeze(-1)
        pl = self.head_p(out).squeeze(-1)
        n_new = torch.clamp(n_new, max=self.n_cap)
        nc_new = torch.clamp(nc_new, max=self.n_cap)
        reserved = torch.zeros_like(state[:, lay["reserved"][0] : lay["reserved"][1]])
        new_state = torch.cat(
            [n_new, m_acc, l_acc, new_ctx.reshape(b, -1), hn.squeeze(0), cn.squeeze(0), nc_new, *extra, reserved],
            dim=1,
        )
        return ev, pl, new_state

    def forward(
        self, wave: torch.Tensor, state_in: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The exported signature: event_prob (B,) at the chunk end, p_prob (B, T), state_out (B, S)."""
        ev, pl, st = self.forward_logits(wave, state_in)
        return torch.sigmoid(ev[:, -1]), torch.sigmoid(pl), st

    def initial_state(self, batch: int) -> torch.Tensor:
        return torch.zeros(batch, self.state_size)

    def config(self) -> dict[str, float | int]:
        """Constructor arguments, saved beside the weights."""
        return {
            "hidden": self.hidden,
            "c1": self.conv1.out_channels,
            "c2": self.conv2.out_channels,
            "c3": self.patch.out_channels,
            "step": self.step,
            "fs": self.fs,
            "tau_mean_s": self.tau_mean_s,
            "tau_level_s": self.tau_level_s,
            "state_size": self.state_size,
            "eps": self.eps,
            "n_cap": self.n_cap,
            "rel_floor": self.rel_floor,
            "head_hidden": self.head_hidden,
            "component_start": self.component_start,
            "highpass": self.highpass,
        }


class Ensemble(nn.Module):
    """Several ``StreamingDetector`` members scored together: one state vector (the members' states
    side by side), event and P logits averaged (a mean of logits, so confident members do not saturate
    the mean in float32). Members with different inputs (raw, high-pass) make different mistakes on
    noise, which is what a low false-alarm rate needs."""

    def __init__(self, members: list[StreamingDetector]) -> None:
        super().__init__()
        if not members:
            raise ValueError("an ensemble needs at least one member")
        first = members[0]
        for m in members[1:]:
            if (m.fs, m.step) != (first.fs, first.step):
                raise ValueError("ensemble members must share sampling rate and step")
        self.members = nn.ModuleList(members)
        self.fs, self.step = first.fs, first.step
        self.tau_mean_s, self.tau_level_s = first.tau_mean_s, first.tau_level_s
        self.highpass = any(m.highpass for m in members)
        self.offsets = [0]
        for m in members:
            self.offsets.append(self.offsets[-1] + m.state_size)
        self.state_size = self.offsets[-1]

    def state_layout(self) -> dict[str, list[int]]:
        """Each member's slices, prefixed ``mK.`` and shifted to where its state sits."""
        lay = {}
        for k, (m, o) in enumerate(zip(self.members, self.offsets, strict=False)):
            for name, (a, b) in m.state_layout().items():
                lay[f"m{k}.{name}"] = [a + o, b + o]
        return lay

    def forward_logits(
        self, wave: torch.Tensor, state: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """As ``StreamingDetector.forward_logits``, with the members' logits averaged."""
        evs, pls, sts = [], [], []
        for m, a, b in zip(self.members, self.offsets[:-1], self.offsets[1:], strict=True):
            ev, pl, st = m.forward_logits(wave, state[:, a:b])
            evs.append(ev)
            pls.append(pl)
            sts.append(st)
        n = float(len(self.members))
        return sum(evs) / n, sum(pls) / n, torch.cat(sts, dim=1)

    forward = StreamingDetector.forward

    def initial_state(self, batch: int) -> torch.Tensor:
        return torch.zeros(batch, self.state_size)

    def config(self) -> dict[str, list[dict[str, float | int]]]:
        return {"members": [m.config() for m in self.members]}


def build_network(config: dict) -> StreamingDetector | Ensemble:
    """The network a saved ``config`` describes: one detector, or an ensemble (``{"members": [...]}``)."""
    if "members" in config:
        return Ensemble([StreamingDetector(**c) for c in config["members"]])
    return StreamingDetector(**config)
