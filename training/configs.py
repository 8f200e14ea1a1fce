"""Model shapes and the training configuration, as plain values.

``MambaShape`` mirrors the ``config.json`` of the ``state-spaces/mamba2-*`` checkpoints (mamba_ssm's
``MambaConfig``), so a config file from the hub or from a paper checkpoint reads straight into it.
"""
from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field


class MambaShape(BaseModel):
    """The shape of a Mamba-2 backbone (mamba_ssm's MambaConfig with Mamba-2 defaults)."""

    d_model: int = 768
    n_layer: int = 24
    vocab_size: int = 50277
    pad_vocab_size_multiple: int = 16
    d_state: int = 128
    d_conv: int = 4
    expand: int = 2
    headdim: int = 64
    ngroups: int = 1
    chunk_size: int = 256
    norm_epsilon: float = 1e-5
    residual_in_fp32: bool = True

    @property
    def padded_vocab_size(self) -> int:
        m = self.pad_vocab_size_multiple
        return self.vocab_size + (m - self.vocab_size % m) % m

    @property
    def d_inner(self) -> int:
        return self.expand * self.d_model

    @property
    def nheads(self) -> int:
        return self.d_inner // self.headdim

    @classmethod
    def from_hub_config(cls, config: dict, source: str = "config.json") -> "MambaShape":
        """Read a mamba_ssm ``config.json`` (``state-spaces/mamba2-*``, the paper's checkpoints)."""
        ssm_cfg = dict(config.get("ssm_cfg") or {})
        layer = ssm_cfg.pop("layer", "Mamba2")
        if layer != "Mamba2":
            raise ValueError(f"{source}: ssm_cfg.layer is {layer!r}; the scanner needs a Mamba2 backbone")
        if config.get("d_intermediate", 0) or config.get("attn_layer_idx"):
            raise ValueError(f"{source}: MLP or attention layers are not supported (d_intermediate=0, no attn_layer_idx)")
        if not config.get("rms_norm", True):
            raise ValueError(f"{source}: rms_norm=false is not supported")
        known = {k: ssm_cfg[k] for k in ("d_state", "d_conv", "expand", "headdim", "ngroups", "chunk_size") if k in ssm_cfg}
        return cls(
            d_model=config["d_model"],
            n_layer=config["n_layer"],
            vocab_size=config["vocab_size"],
            pad_vocab_size_multiple=config.get("pad_vocab_size_multiple", 8),
            residual_in_fp32=config.get("residual_in_fp32", True),
            **known,
        )

    def to_hub_config(self) -> dict:
        """The mamba_ssm ``config.json`` for this shape (what ``save_checkpoint`` writes)."""
        return {
            "d_model": self.d_model,
            "d_intermediate": 0,
            "n_layer": self.n_layer,
            "vocab_size": self.vocab_size,
            "ssm_cfg": {
                "layer": "Mamba2",
                "d_state": self.d_state,
                "d_conv": self.d_conv,
                "expand": self.expand,
                "headdim": self.headdim,
                "ngroups": self.ngroups,
                "chunk_size": self.chunk_size,
            },
            "attn_layer_idx": [],
            "attn_cfg": {},
            "rms_norm": True,
            "residual_in_fp32": self.residual_in_fp32,
            "fused_add_norm": True,
            "pad_vocab_size_multiple": self.pad_vocab_size_multiple,
            "tie_embeddings": True,
        }


# Named shapes: `small` is a tiny model for tests and CPU smoke runs; the others match the
# state-spaces/mamba2-130m and mamba2-1.3b checkpoints.
MODEL_CONFIGS: dict[str, MambaShape] = {
    "small": MambaShape(d_model=64, n_layer=2, d_state=16, headdim=16, chunk_size=32),
    "130m": MambaShape(d_model=768, n_layer=24),
    "370m": MambaShape(d_model=1024, n_layer=48),
    "780m": MambaShape(d_model=1536, n_layer=48),
    "1.3b": MambaShape(d_model=2048, n_layer=48),
    "2.7b": MambaShape(d_model=2560, n_layer=64),
}


def model_shape(name: str) -> MambaShape:
    try:
        return MODEL_CONFIGS[name].model_copy()
    except KeyError:
        raise ValueError(f"unknown model config {name!r}; choose one of {', '.join(MODEL_CONFIGS)}") from None


class TrainConfig(BaseModel):
    """Everything one training run needs; stored in the run folder as ``train_config.json``."""

    dataset: str = Field(description="a published dataset version folder (or a dataset folder: its LATEST)")
    out: str = Field(description="run folder: checkpoints, metrics.jsonl, train_config.json")
    model: str | None = Field(default=None, description="hub id or local folder to start from")
    shape: str = Field(default="small", description="named shape when starting from scratch (no `model`)")
    backend: Literal["hf", "mamba_ssm"] = "hf"
    device: str = "cpu"
    seed: int = 0
    max_steps: int = 100
    tokens_per_step: int = 65536  # global (all ranks, all micro-batches) token budget per optimizer step
    micro_batch_tokens: int = 65536  # padded-token budget of one forward/backward on one rank (1.3b on an H200: 32768)
    max_seq_tokens: int = 16384  # longer examples are dropped (counted as `too_long`)
    lr: float = 1e-4
    min_lr: float = 1e-5
    warmup_fraction: float = 0.1
    weight_decay: float = 0.1
    beta1: float = 0.9
    beta2: float = 0.95
    grad_clip: float = 1.0
    precision: Literal["bf16", "fp32"] = "bf16"  # bf16 autocast with fp32 master weights, or plain fp32
    shuffle_buffer: int = 256
    num_workers: int = 0  # dataloader worker processes per rank (each reads its own shard files)
    # Training-only match objective (Example.match_labels), added to the unit loss with this
    # weight; 0 is the paper's objective alone. Tried from scratch, it fitted the training batches
    # faster but did not help held-out documents (BENCHMARKS.md, "Learning from scratch").
    match_loss_weight: float = Field(default=0.0, ge=0)
    # Share of training examples whose token ids are renamed by a random one-to-one map, the same
    # for question and chunk (linkscan.training.data.relabel): matching the question still pays, memorising
    # a document's rare ids does not. Validation examples are never relabelled.
    relabel_share: float = Field(default=0.0, ge=0, le=1)
    # Packed rows (mamba_ssm only): examples end to end in one row of micro_batch_tokens, the state
    # restarted at each; cuda_graphs (needs pack) replays each micro-batch as one CUDA graph.
    pack: bool = False
    cuda_graphs: bool = False
    length_buckets: list[int] = Field(default_factory=lambda: [512, 1024, 1536, 2048, 3072, 4096, 6144, 8192, 12288, 16384])
    # How to hold out validation data: "auto" (the last `validation_shards` shards when there are
    # more than that, else whole documents), "shards", "documents" (`validation_fraction` of the
    # documents, by a stable hash of doc_id) or "none".
    validation: Literal["auto", "shards", "documents", "none"] = "auto"
    validation_shards: int = Field(default=1, ge=0)
    validation_fraction: float = Field(default=0.1, gt=0, lt=1)
    # Train on a version published with allow_partial (complete: false); refused by default.
    allow_partial: bool = False
    validate_every: int = 50
    validation_examples: int = 64
    recall_k: list[int] = Field(default_factory=lambda: [1, 5, 10])
    checkpoint_every: int = 50
    log_every: int = 1
    progress: bool = True


# Named presets: TrainConfig values that go together; options given beside a preset override it.
PRESETS: dict[str, dict] = {
    # From random weights on one H200: packed rows replayed as CUDA graphs (248k tokens/s for 130m
    # at 16k-token micro-batches), validation on held-out documents, about 8 minutes. On the dev
    # corpus's offline dataset it does not yet learn to match questions across documents (held-out
    # loss stays at the best constant's): BENCHMARKS.md, "Learning from scratch".
    "from-scratch": {
        "shape": "130m", "backend": "mamba_ssm", "device": "cuda", "match_loss_weight": 0.0,
        "lr": 1e-3, "min_lr": 1e-4, "max_steps": 6000, "tokens_per_step": 16384, "micro_batch_tokens": 16384,
        "max_seq_tokens": 16384, "pack": True, "cuda_graphs": True, "num_workers": 1,
        "validation": "documents", "validation_examples": 128, "validate_every": 250, "checkpoint_every": 1000,
        "log_every": 25,
    },
    # The README's CPU example: a tiny shape, short enough to finish in about a minute on 2 cores.
    "cpu-example": {
        "shape": "small", "backend": "hf", "device": "cpu", "precision": "fp32", "max_steps": 20,
        "tokens_per_step": 4096, "micro_batch_tokens": 4096, "max_seq_tokens": 4096, "lr": 3e-3, "min_lr": 3e-4,
        "validation_examples": 16, "validate_every": 20, "checkpoint_every": 20,
    },
}


class TrainSettings(TrainConfig):
    """``TrainConfig`` as a settings file or --set gives it: every field optional, so the device
    and back end can still be chosen by what the machine has after the user's values are read."""

    backend: Literal["hf", "mamba_ssm"] | None = None
    device: str | None = None


def preset_values(name: str | None) -> dict:
    if name is None:
        return {}
    try:
        return dict(PRESETS[name])
    except KeyError:
        raise ValueError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}") from None
