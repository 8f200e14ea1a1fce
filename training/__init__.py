"""Training the single-pass scanner. Imports torch, pyarrow and pydantic only (never Prefect or spaCy).

- ``configs``: ``MambaShape`` (mamba_ssm's config.json), named shapes, ``TrainConfig``.
- ``model``: ``ScannerModel``: Mamba-2 backbone (``mamba_ssm`` or ``hf`` back end) + binary head.
- ``segments``: one long pass run segment by segment with the SSM and conv state carried across.
- ``checkpoint``: strict loading (hub id or folder; paper, state-spaces, own formats), saving, resume.
- ``data``: examples shards -> shuffled, length-bucketed, token-budget micro-batches per rank/worker.
- ``loop``: ``train(config, rank, world_size)``, the training loop read top to bottom.
"""
