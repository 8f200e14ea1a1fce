"""One long pass, run segment by segment with the SSM and convolution state carried across.

A Mamba-2 layer's memory of the past is (a) its SSM state, ``(batch, nheads, headdim, d_state)``,
and (b) the last ``d_conv - 1`` inputs of its causal convolution. Carrying both from one segment to
the next gives the same outputs as one long pass, with memory bounded by the segment length.

The convolution state is carried by prepending the previous segment's last ``d_conv - 1``
projected rows (``zxbcdt``) to the next segment, with their ``dt`` set to a large negative value:
softplus(dt) is then exactly 0, so those rows feed the convolution but neither decay nor add to the
SSM state, and their outputs are dropped. This lets the GPU path use mamba_ssm's fully fused
``mamba_split_conv1d_scan_combined`` kernel with ``initial_states``; the CPU path runs the same
arithmetic in plain PyTorch (the chunked SSD algorithm, "ssd_minimal" of the Mamba-2 paper).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from linkscan.training.model import ScannerModel

_MASKED_DT = -1.0e4  # softplus(-1e4 + dt_bias) == 0 in fp32 and bf16


@dataclass
class ScanState:
    """What a pass remembers between segments: per layer, the conv tail rows and the SSM state."""

    conv_tails: list[torch.Tensor | None] = field(default_factory=list)
    ssm_states: list[torch.Tensor | None] = field(default_factory=list)
    position: int = 0  # tokens consumed so far

    @classmethod
    def empty(cls, n_layer: int) -> "ScanState":
        return cls([None] * n_layer, [None] * n_layer, 0)


# -- plain PyTorch arithmetic (CPU, and the reference for tests) ----------------------------------
def _segsum(x: torch.Tensor) -> torch.Tensor:
    """Stable segment sums: out[..., i, j] = sum(x[..., j+1:i+1]) for j <= i, -inf above."""
    length = x.size(-1)
    x = x[..., None].expand(*x.shape, length)
    lower = torch.tril(torch.ones(length, length, dtype=torch.bool, device=x.device), diagonal=-1)
    x = x.masked_fill(~lower, 0)
    sums = torch.cumsum(x, dim=-2)
    keep = torch.tril(torch.ones(length, length, dtype=torch.bool, device=x.device), diagonal=0)
    return sums.masked_fill(~keep, -torch.inf)


def ssd_scan(
    x: torch.Tensor, a: torch.Tensor, b: torch.Tensor, c: torch.Tensor, chunk: int,
    initial_state: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Chunked SSD scan in fp32.

    x (batch, length, heads, headdim) already multiplied by dt; a (batch, length, heads) = A*dt;
    b, c (batch, length, heads, d_state). Returns y like x and the final state
    (batch, heads, headdim, d_state). Padding rows (x = a = 0) leave the state unchanged.
    """
    batch, length, heads, headdim = x.shape
    pad = (chunk - length % chunk) % chunk
    if pad:
        x, b, c = (F.pad(t, (0, 0, 0, 0, 0, pad)) for t in (x, b, c))
        a = F.pad(a, (0, 0, 0, pad))
    n_chunks = x.shape[1] // chunk
    x, b, c = (t.reshape(batch, n_chunks, chunk, heads, t.shape[-1]) for t in (x, b, c))
    a = a.reshape(batch, n_chunks, chunk, heads).permute(0, 3, 1, 2)  # (b, h, c, l)
    a_cumsum = torch.cumsum(a, dim=-1)
    decay = torch.exp(_segsum(a))  # (b, h, c, l, s)
    y_diag = torch.einsum("bclhn,bcshn,bhcls,bcshp->bclhp", c, b, decay, x)
    decay_states = torch.exp(a_cumsum[..., -1:] - a_cumsum)
    states = torch.einsum("bclhn,bhcl,bclhp->bchpn", b, decay_states, x)
    if initial_state is None:
        initial_state = torch.zeros_like(states[:, :1])
    else:
        initial_state = initial_state[:, None].to(states.dtype)
    states = torch.cat([initial_state, states], dim=1)
    decay_chunk = torch.exp(_segsum(F.pad(a_cumsum[..., -1], (1, 0))))  # (b, h, c+1, c+1)
    new_states = torch.einsum("bhzc,bchpn->bzhpn", decay_chunk, states)
    states, final_state = new_states[:, :-1], new_states[:, -1]
    y_off = torch.einsum("bclhn,bchpn,bhcl->bclhp", c, states, torch.exp(a_cumsum))
    y = (y_diag + y_off).reshape(batch, n_chunks * chunk, heads, headdim)
    return y[:, :length], final_state


def _rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    x32 = x.float()
    return (x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + eps)) * weight.float()


def _split_conv1d_scan_torch(zxbcdt: torch.Tensor, mixer: torch.nn.Module, model: ScannerModel,
                             initial_state: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    shape = model.shape
    d_ssm, groups_state, heads = shape.d_inner, shape.ngroups * shape.d_state, shape.nheads
    batch, length, _ = zxbcdt.shape
    z, xbc, dt = torch.split(zxbcdt, [d_ssm, d_ssm + 2 * groups_state, heads], dim=-1)
    weight = mixer.conv1d.weight  # (channels, 1, d_conv)
    xbc = F.conv1d(xbc.transpose(1, 2), weight, mixer.conv1d.bias, padding=shape.d_conv - 1, groups=weight.shape[0])
    xbc = F.silu(xbc[..., :length].transpose(1, 2))
    x, b, c = torch.split(xbc, [d_ssm, groups_state, groups_state], dim=-1)
    dt = F.softplus(dt.float() + mixer.dt_bias.float())  # (batch, length, heads)
    a = -torch.exp(mixer.A_log.float())
    x = x.float().reshape(batch, length, heads, shape.headdim)
    per_group = heads // shape.ngroups
    b = b.float().reshape(batch, length, shape.ngroups, shape.d_state).repeat_interleave(per_group, dim=2)
    c = c.float().reshape(batch, length, shape.ngroups, shape.d_state).repeat_interleave(per_group, dim=2)
    y, final_state = ssd_scan(x * dt[..., None], a * dt, b, c, shape.chunk_size, initial_state)
    y = y + x * mixer.D.float()[:, None]
    y = y.reshape(batch, length, d_ssm) * F.silu(z.float())
    group = d_ssm // shape.ngroups
    y = _rms_norm(y.reshape(batch, length, shape.ngroups, group), mixer.norm.weight.reshape(shape.ngroups, group),
                  shape.norm_epsilon).reshape(batch, length, d_ssm)
    return mixer.out_proj(y.to(zxbcdt.dtype)), final_state


def _split_conv1d_scan_fused(zxbcdt: torch.Tensor, mixer: torch.nn.Module, model: ScannerModel,
                             initial_state: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    from mamba_ssm.ops.triton.ssd_combined import mamba_split_conv1d_scan_combined

    shape = model.shape
    return mamba_split_conv1d_scan_combined(
        zxbcdt,
        mixer.conv1d.weight.squeeze(1),
        mixer.conv1d.bias,
        mixer.dt_bias,
        -torch.exp(mixer.A_log.float()),
        D=mixer.D,
        chunk_size=shape.chunk_size,
        initial_states=initial_state,
        return_final_states=True,
        activation="silu",
        rmsnorm_weight=mixer.norm.weight,
        rmsnorm_eps=shape.norm_epsilon,
        outproj_weight=mixer.out_proj.weight,
        outproj_bias=mixer.out_proj.bias,
        headdim=shape.headdim,
        ngroups=shape.ngroups,
        norm_before_gate=False,
    )


def _add_norm(hidden: torch.Tensor, residual: torch.Tensor | None, weight: torch.Tensor, model: ScannerModel,
              fused: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Pre-norm residual step: residual += hidden; hidden = RMSNorm(residual) (residual kept in fp32)."""
    eps = model.shape.norm_epsilon
    if fused:
        from mamba_ssm.ops.triton.layer_norm import rms_norm_fn

        return rms_norm_fn(hidden, weight, None, residual=residual, prenorm=True,
                           residual_in_fp32=model.shape.residual_in_fp32, eps=eps)
    residual = hidden if residual is None else hidden + residual
    if model.shape.residual_in_fp32:
        residual = residual.float()
    return _rms_norm(residual, weight, eps).to(weight.dtype), residual


def _project_after(tail: torch.Tensor | None, hidden: torch.Tensor, in_proj: torch.nn.Linear) -> torch.Tensor:
    """``cat([tail, in_proj(hidden)], dim=1)`` without copying the projection (written in place)."""
    if tail is None:
        return in_proj(hidden)
    batch, length, _ = hidden.shape
    weight = in_proj.weight
    out = torch.empty(batch, tail.shape[1] + length, weight.shape[0], dtype=tail.dtype, device=hidden.device)
    out[:, : tail.shape[1]] = tail
    for row in range(batch):  # each row's slice is contiguous, so matmul can write into it
        torch.matmul(hidden[row], weight.t(), out=out[row, tail.shape[1]:])
    if in_proj.bias is not None:
        out[:, tail.shape[1]:] += in_proj.bias
    return out


@torch.no_grad()
def forward_segment(model: ScannerModel, input_ids: torch.Tensor, state: ScanState) -> torch.Tensor:
    """Final normed hidden states (batch, length, d_model) of one segment; ``state`` is updated in place."""
    shape = model.shape
    fused = model.backend == "mamba_ssm"
    split_conv1d_scan = _split_conv1d_scan_fused if fused else _split_conv1d_scan_torch
    keep = shape.d_conv - 1
    hidden = model.embedding(input_ids)
    residual = None
    for i, layer in enumerate(model.layers):
        hidden, residual = _add_norm(hidden, residual, layer.norm.weight, model, fused)
        mixer = layer.mixer
        tail = state.conv_tails[i]
        zxbcdt = _project_after(tail, hidden, mixer.in_proj)
        new_tail = zxbcdt[:, -keep:].clone()
        new_tail[..., -shape.nheads:] = _MASKED_DT
        out, state.ssm_states[i] = split_conv1d_scan(zxbcdt, mixer, model, state.ssm_states[i])
        state.conv_tails[i] = new_tail
        hidden = out[:, zxbcdt.shape[1] - input_ids.shape[1]:]
    hidden, _ = _add_norm(hidden, residual, model.norm_f.weight, model, fused)
    state.position += input_ids.shape[1]
    return hidden


@torch.no_grad()
def score_segment(model: ScannerModel, input_ids: torch.Tensor, positions: torch.Tensor, state: ScanState) -> torch.Tensor:
    """Head logits (batch, n) at ``positions`` (segment-relative) of one segment; updates ``state``."""
    hidden = forward_segment(model, input_ids, state)
    picked = hidden[:, positions]
    return model.binary_head(picked.to(model.binary_head.weight.dtype)).squeeze(-1).float()
