"""The S4 layer ECG-CPC's predictor uses, ported for inference: NPLR kernel, FFT convolution, S4Model stack.

Source read: github.com/AI4HealthUOL/ecg-fm-benchmarking @ 6367295666569d63d6642594bbe3ae9ac56a1644,
``code/clinical_ts/ts/s4_modules/s42.py`` (the standalone S4 of HazyResearch/state-spaces, as the group
vendors it) and ``s4_model.py``. Module and attribute names are the authors', so their state dict loads
with ``strict=True``:

* ``S4Model``: ``encoder`` (Identity when d_input == d_model, else Linear), ``s4_layers.i`` (``S4``),
  ``norms.i`` (LayerNorm, or BatchNorm1d when layer_norm=False), ``dropouts.i``; post-norm residual blocks.
* ``S4``: ``D`` [channels, H]; ``kernel`` = ``HippoSSKernel`` whose ``kernel`` = ``SSKernelNPLR`` holds
  ``C`` (the only trainable kernel tensor: with ``trainable=None`` the authors register ``log_dt``, ``B``,
  ``P``, ``w`` and ``Q`` as buffers) and the FFT nodes ``omega`` and ``z`` of the kernel length L (buffers,
  so L is read back from the checkpoint); ``output_linear`` = Sequential(TransposedLinear(H, 2H), GLU(-2)).

What is ported exactly: ``SSKernelNPLR.forward`` for ``state=None, rate=1.0`` (dt scaling, the B/P x C/Q
resolvent at the cached nodes z, the rank-1 Woodbury correction, the bilinear factor 2/(1+omega), irfft,
truncation to the sequence length) and ``S4.forward`` (FFT convolution with zero padding to 2L, D skip,
GELU, output_linear + GLU). The Cauchy sum, which the authors evaluate with pykeops or a CUDA extension,
is written out here in plain torch with the same formula (``cauchy``).

What is not ported: sequences longer than the checkpoint's kernel length (the authors then double L in
place, changing ``C``; here that raises an error), the recurrent ``step``/``setup_step`` mode (not used by
the forward pass), ranks above 1 (the HiPPO-LegS measure the authors use has rank 1) and the HiPPO
initialisation (``nplr``/``transition``): a new port starts from simple placeholder values, and every one of
them is replaced by the checkpoint's.
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


def cauchy(v: torch.Tensor, z: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """sum_n v/(z - w) + conj(v)/(z - conj(w)) over the last axis (the pykeops cauchy_conj formula).

    v: (..., N), z: (L,), w: (..., N) -> (..., L); evaluated as 2 (z Re v - Re(v conj w)) / ((z - w)(z - conj w)).
    """
    v, w = v.unsqueeze(-2), w.unsqueeze(-2)
    z = z.unsqueeze(-1)
    numerator = z * v.real - (v * w.conj()).real
    return 2 * (numerator / ((z - w) * (z - w.conj()))).sum(-1)


def fft_nodes(length: int) -> tuple[torch.Tensor, torch.Tensor]:
    """SSKernelNPLR._omega: omega = exp(-2 pi i / L)^k, k <= L/2, and z = 2 (1 - omega) / (1 + omega), as real pairs."""
    omega = torch.tensor(np.exp(-2j * np.pi / length), dtype=torch.cfloat) ** torch.arange(0, length // 2 + 1)
    z = 2 * (1 - omega) / (1 + omega)
    return torch.view_as_real(omega), torch.view_as_real(z)


class SSKernelNPLR(nn.Module):
    """The NPLR SSM kernel K_L(A, B, C, dt) with A = diag(w) - P Q^*; tensors as the authors register them."""

    def __init__(self, H: int, N: int, L: int, channels: int = 1, rank: int = 1):  # noqa: N803 - the authors' names
        super().__init__()
        self.H, self.N, self.rank = H, N, rank
        omega, z = fft_nodes(L)
        self.register_buffer("omega", omega)
        self.register_buffer("z", z)
        # Placeholders (HiPPO init is not ported): a stable diagonal A, values replaced by the checkpoint's.
        w = torch.complex(-0.5 * torch.ones(H, N), math.pi * torch.arange(N).float().expand(H, N))
        self.C = nn.Parameter(torch.view_as_real(torch.randn(channels, H, N, dtype=torch.cfloat)))
        log_dt = torch.rand(H) * (math.log(0.1) - math.log(0.001)) + math.log(0.001)
        self.register_buffer("log_dt", log_dt)
        self.register_buffer("B", torch.view_as_real(torch.ones(1, H, N, dtype=torch.cfloat)))
        self.register_buffer("P", torch.zeros(rank, H, N, 2))
        self.register_buffer("w", torch.view_as_real(w).contiguous())
        self.register_buffer("Q", torch.zeros(rank, H, N, 2))

    @property
    def L(self) -> int:  # noqa: N802 - the authors' attribute
        """The kernel length the cached FFT nodes belong to."""
        return 2 * (self.omega.shape[0] - 1)

    def forward(self, L: int) -> torch.Tensor:  # noqa: N803
        """The (channels, H, L) convolution kernel (forward with state=None, rate=1.0)."""
        if L > self.L:
            raise ValueError(f"sequence of {L} steps is longer than the kernel length {self.L} stored in the "
                             "checkpoint (the authors would double the kernel in place; not ported)")
        if self.rank != 1:
            raise ValueError(f"rank {self.rank} low-rank correction is not ported (HiPPO-LegS has rank 1)")
        dt = torch.exp(self.log_dt)
        B, C = torch.view_as_complex(self.B), torch.view_as_complex(self.C)  # noqa: N806
        P, Q = torch.view_as_complex(self.P), torch.view_as_complex(self.Q)  # noqa: N806
        w = torch.view_as_complex(self.w) * dt.unsqueeze(-1)
        omega, z = torch.view_as_complex(self.omega), torch.view_as_complex(self.z)
        B = torch.cat([B, P], dim=-3)  # noqa: N806 - (1 + r, H, N)
        C = torch.cat([C, Q], dim=-3)  # noqa: N806 - (c + r, H, N)
        v = B.unsqueeze(-3) * C.unsqueeze(-4)  # (1 + r, c + r, H, N)
        r = cauchy(v, z, w) * dt[None, None, :, None]  # (1 + r, c + r, H, L/2 + 1)
        k_f = r[:-1, :-1, :, :] - r[:-1, -1:, :, :] * r[-1:, :-1, :, :] / (1 + r[-1:, -1:, :, :])
        k_f = k_f * 2 / (1 + omega)
        k = torch.fft.irfft(k_f)[..., :L]
        return k[-1, :, :, :]


class HippoSSKernel(nn.Module):
    """Wrapper that holds the SSKernelNPLR as `kernel` and returns its kernel in float32."""

    def __init__(self, H: int, N: int, L: int, channels: int = 1):  # noqa: N803
        super().__init__()
        self.kernel = SSKernelNPLR(H, N // 2, L, channels)

    def forward(self, L: int) -> torch.Tensor:  # noqa: N803
        """kernel(L).float()."""
        return self.kernel(L).float()


class TransposedLinear(nn.Module):
    """Linear over the second-to-last axis: weight (out, in), bias (out, 1)."""

    def __init__(self, d_input: int, d_output: int):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(d_output, d_input))
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        bound = 1 / math.sqrt(d_input)
        self.bias = nn.Parameter(torch.empty(d_output, 1).uniform_(-bound, bound))

    def forward(self, x):
        """contract('... u l, v u -> ... v l') + bias."""
        return torch.einsum("...ul,vu->...vl", x, self.weight) + self.bias


class S4(nn.Module):
    """S4 block (transposed, causal or bidirectional): SSM convolution + D skip, GELU, linear + GLU."""

    def __init__(self, d_model: int, d_state: int, l_max: int, bidirectional: bool = False):
        super().__init__()
        self.h, self.n, self.bidirectional = d_model, d_state, bidirectional
        self.D = nn.Parameter(torch.randn(1, d_model))
        self.kernel = HippoSSKernel(d_model, d_state, l_max, channels=2 if bidirectional else 1)
        self.activation = nn.GELU()
        self.dropout = nn.Identity()
        self.output_linear = nn.Sequential(TransposedLinear(d_model, 2 * d_model), nn.GLU(dim=-2))
        self.frozen_length = 0  # > 0 once freeze_kernel() has stored the spectrum for one length

    def spectrum(self, length: int) -> torch.Tensor:
        """rfft(k, n=2L) of the (bidirectional-combined) kernel for sequences of `length` steps."""
        k = self.kernel(L=length)
        if self.bidirectional:
            k0, k1 = k.unflatten(0, (2, -1))
            k = F.pad(k0, (0, length)) + F.pad(k1.flip(-1), (length, 0))
        return torch.fft.rfft(k, n=2 * length)

    @torch.no_grad()
    def freeze_kernel(self, length: int) -> None:
        """Store the kernel spectrum for one sequence length as real buffers (for ONNX: no complex tensors)."""
        k_f = self.spectrum(length)
        self.register_buffer("k_f_real", k_f.real.contiguous(), persistent=False)
        self.register_buffer("k_f_imag", k_f.imag.contiguous(), persistent=False)
        self.frozen_length = length

    def forward(self, u):
        """u (B, H, L) -> (B, H, L)."""
        length = u.size(-1)
        if self.frozen_length:
            if length != self.frozen_length:
                raise ValueError(f"kernel frozen for {self.frozen_length} steps, got {length}")
            u_f = torch.view_as_real(torch.fft.rfft(u, n=2 * length)).unsqueeze(1)  # (B, 1, H, L+1, 2)
            ur, ui = u_f[..., 0], u_f[..., 1]
            y_f = torch.complex(ur * self.k_f_real - ui * self.k_f_imag, ur * self.k_f_imag + ui * self.k_f_real)
        else:
            k_f = self.spectrum(length)
            y_f = torch.einsum("bhl,chl->bchl", torch.fft.rfft(u, n=2 * length), k_f)
        y = torch.fft.irfft(y_f, n=2 * length)[..., :length]  # (B, C, H, L)
        y = y + torch.einsum("bhl,ch->bchl", u, self.D)
        y = y.flatten(1, 2)  # '... c h l -> ... (c h) l'
        y = self.dropout(self.activation(y))
        return self.output_linear(y)


class S4Model(nn.Module):
    """s4_model.S4Model with transposed_input=False, pooling=False, no decoder (the predictor's use)."""

    def __init__(self, d_input: int | None, d_state: int, d_model: int, n_layers: int, l_max: int,
                 bidirectional: bool = False, prenorm: bool = False, layer_norm: bool = True):
        super().__init__()
        self.prenorm, self.layer_norm = prenorm, layer_norm
        self.encoder = nn.Identity() if d_input is None else nn.Linear(d_input, d_model)
        self.s4_layers = nn.ModuleList(S4(d_model, d_state, l_max, bidirectional) for _ in range(n_layers))
        self.norms = nn.ModuleList((nn.LayerNorm(d_model) if layer_norm else nn.BatchNorm1d(d_model))
                                   for _ in range(n_layers))
        self.dropouts = nn.ModuleList(nn.Identity() for _ in range(n_layers))

    def _norm(self, norm, x):
        return norm(x.transpose(-1, -2)).transpose(-1, -2) if self.layer_norm else norm(x)

    def forward(self, x):
        """(B, L, d_input) -> (B, L, d_model)."""
        x = self.encoder(x).transpose(-1, -2)
        for layer, norm, dropout in zip(self.s4_layers, self.norms, self.dropouts):
            z = self._norm(norm, x) if self.prenorm else x
            z = dropout(layer(z))
            x = z + x
            if not self.prenorm:
                # The authors' post-norm: BatchNorm models normalise z, not x (kept as written).
                x = self._norm(norm, x) if self.layer_norm else norm(z)
        return x.transpose(-1, -2)
