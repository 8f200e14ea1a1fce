"""GPU checks of single-pass scanning (run on the device machine with `pytest -m gpu`)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

pytestmark = pytest.mark.gpu

needs_gpu = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@needs_gpu
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_carried_state_scan_equals_one_long_pass_with_the_fused_kernels(dtype):
    from linkscan.evaluation.scanning import scan_document
    from linkscan.training.configs import model_shape
    from linkscan.training.model import ScannerModel

    torch.manual_seed(0)
    model = ScannerModel(model_shape("130m"), backend="mamba_ssm", device="cuda").to(dtype).eval()
    rng = np.random.default_rng(0)
    question = rng.integers(0, 50000, 20).tolist()
    document = rng.integers(0, 50000, 40000).tolist()
    ends = np.sort(rng.choice(np.arange(40000), 800, replace=False))
    ends[-1] = 39999
    carried = scan_document(model, question, document, ends.tolist(), segment_tokens=7000)
    ids = torch.tensor([question + document], device="cuda")
    positions = torch.tensor([ends + len(question)], device="cuda")
    one_pass = model.score(ids, positions)[0].float().cpu().numpy()
    scale = np.abs(one_pass).max()
    tolerance = 5e-3 if dtype == torch.float32 else 0.03
    assert np.abs(carried - one_pass).max() <= tolerance * max(scale, 1.0)
    assert np.corrcoef(carried, one_pass)[0, 1] > 0.999
