"""The scanner: a Mamba-2 backbone plus one logit per retrieval unit.

The logit of unit i is ``binary_head(h[t_i])`` where ``h`` is the backbone's final (normed) hidden
state and ``t_i`` the position of the unit's last token. The language-model head is never built:
at 256k tokens its logits alone take 25 GB.

Two back ends hold the same weights under the same canonical names (mamba_ssm's):
``mamba_ssm`` (``MixerModel``, the backbone of ``MambaLMHeadModel``; fused Triton/CUDA kernels, GPU)
and ``hf`` (transformers ``Mamba2Model``; pure PyTorch, runs on CPU). Their parameter names
differ only in ``embedding.`` (mamba_ssm) vs ``embeddings.`` (transformers).
"""
from __future__ import annotations

import torch
from torch import nn

from linkscan.training.configs import MambaShape

BACKENDS = ("hf", "mamba_ssm")


def mamba_ssm_available() -> bool:
    try:
        import mamba_ssm  # noqa: F401
    except ImportError:
        return False
    return True


def default_backend(device: str | torch.device) -> str:
    """mamba_ssm on a CUDA device when it is installed, else the transformers back end."""
    return "mamba_ssm" if torch.device(device).type == "cuda" and mamba_ssm_available() else "hf"


def _hf_backbone(shape: MambaShape) -> nn.Module:
    from transformers import Mamba2Config, Mamba2Model

    config = Mamba2Config(
        vocab_size=shape.padded_vocab_size,
        hidden_size=shape.d_model,
        num_hidden_layers=shape.n_layer,
        state_size=shape.d_state,
        expand=shape.expand,
        head_dim=shape.headdim,
        num_heads=shape.nheads,
        n_groups=shape.ngroups,
        conv_kernel=shape.d_conv,
        chunk_size=shape.chunk_size,
        use_bias=False,
        use_conv_bias=True,
        layer_norm_epsilon=shape.norm_epsilon,
        residual_in_fp32=shape.residual_in_fp32,
        rms_norm=True,
        time_step_limit=(0.0, float("inf")),
        tie_word_embeddings=False,
    )
    return Mamba2Model(config)


def _mamba_ssm_backbone(shape: MambaShape, device: torch.device | None) -> nn.Module:
    try:
        from mamba_ssm.models.mixer_seq_simple import MixerModel
    except ImportError as error:
        raise RuntimeError(
            f"backend 'mamba_ssm' needs the mamba-ssm and causal-conv1d packages ({error}); "
            "install the `gpu` extra on a CUDA machine, or use --backend hf"
        ) from None
    ssm_cfg = {
        "layer": "Mamba2",
        "d_state": shape.d_state,
        "d_conv": shape.d_conv,
        "expand": shape.expand,
        "headdim": shape.headdim,
        "ngroups": shape.ngroups,
        "chunk_size": shape.chunk_size,
    }
    return MixerModel(
        d_model=shape.d_model,
        n_layer=shape.n_layer,
        d_intermediate=0,
        vocab_size=shape.padded_vocab_size,
        ssm_cfg=ssm_cfg,
        rms_norm=True,
        norm_epsilon=shape.norm_epsilon,
        fused_add_norm=True,
        residual_in_fp32=shape.residual_in_fp32,
        device=device,
    )


def to_canonical(name: str) -> str:
    """A backbone parameter name in mamba_ssm's spelling (the spelling of checkpoints on disk)."""
    return name.replace("embeddings.", "embedding.", 1) if name.startswith("embeddings.") else name


def to_backend(name: str, backend: str) -> str:
    """A canonical backbone parameter name in the given back end's spelling."""
    if backend == "hf" and name.startswith("embedding."):
        return name.replace("embedding.", "embeddings.", 1)
    return name


class ScannerModel(nn.Module):
    """Mamba-2 backbone + ``Linear(d_model, 1)`` read at sentence-end positions."""

    def __init__(self, shape: MambaShape, backend: str = "hf", device: str | torch.device | None = None) -> None:
        super().__init__()
        if backend not in BACKENDS:
            raise ValueError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
        self.shape = shape
        self.backend = backend
        device = torch.device(device) if device is not None else None
        if backend == "hf":
            self.backbone = _hf_backbone(shape)
        else:
            if device is None or device.type != "cuda":
                raise ValueError("backend 'mamba_ssm' runs on CUDA only; pass device='cuda' or use backend 'hf'")
            self.backbone = _mamba_ssm_backbone(shape, device)
        self.binary_head = nn.Linear(shape.d_model, 1)
        if device is not None:
            self.to(device)

    # -- the parts both back ends share, under one name ----------------------------------------
    @property
    def embedding(self) -> nn.Embedding:
        return self.backbone.embeddings if self.backend == "hf" else self.backbone.embedding

    @property
    def layers(self) -> nn.ModuleList:
        return self.backbone.layers

    @property
    def norm_f(self) -> nn.Module:
        return self.backbone.norm_f

    def hidden_states(self, input_ids: torch.Tensor, seq_idx: torch.Tensor | None = None) -> torch.Tensor:
        """Final normed hidden states (batch, length, d_model) from the back end's own forward.

        ``seq_idx`` (batch, length, int32) marks packed examples: the state restarts where it changes
        (mamba_ssm only; the transformers back end has no such input).
        """
        if self.backend == "hf":
            if seq_idx is not None:
                raise ValueError("packed rows (seq_idx) need the mamba_ssm back end; the hf back end takes padded rows")
            return self.backbone(input_ids=input_ids).last_hidden_state
        if seq_idx is not None:
            return self.backbone(input_ids, seq_idx=seq_idx)
        return self.backbone(input_ids)

    def head(self, hidden: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        """Logits (batch, n_positions) of the binary head on ``hidden`` at ``positions``."""
        index = positions.unsqueeze(-1).expand(-1, -1, hidden.shape[-1])
        picked = torch.gather(hidden, 1, index)
        return self.binary_head(picked.to(self.binary_head.weight.dtype)).squeeze(-1).float()

    def forward(self, input_ids: torch.Tensor, positions: torch.Tensor, seq_idx: torch.Tensor | None = None) -> torch.Tensor:
        """Logits (batch, n_positions) at ``positions`` (batch, n_positions) of ``input_ids`` (batch, length).

        Padded positions may hold any valid index (0 is customary); the caller masks them.
        """
        return self.head(self.hidden_states(input_ids, seq_idx), positions)

    @torch.no_grad()
    def score(self, input_ids: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        """``forward`` without gradients: relevance logits of the units ending at ``positions``."""
        return self.forward(input_ids, positions)

    # -- weights under canonical names ---------------------------------------------------------
    def canonical_state_dict(self) -> dict[str, torch.Tensor]:
        """``backbone.*`` in mamba_ssm naming plus ``binary_head.*``: the checkpoint format."""
        state = {f"backbone.{to_canonical(k)}": v for k, v in self.backbone.state_dict().items()}
        state.update({f"binary_head.{k}": v for k, v in self.binary_head.state_dict().items()})
        return state

    def num_parameters(self, backbone_only: bool = False) -> int:
        module = self.backbone if backbone_only else self
        return sum(p.numel() for p in module.parameters())
