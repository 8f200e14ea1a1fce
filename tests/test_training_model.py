"""The scanner model and its strict checkpoint loading (CPU, transformers back end, tiny shape)."""
from __future__ import annotations

import json

import pytest
import torch

from linkscan.training.checkpoint import CheckpointError, load_model, read_shape, save_weights
from linkscan.training.configs import MambaShape, model_shape
from linkscan.training.model import ScannerModel


@pytest.fixture(scope="module")
def probe_inputs() -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(3)
    input_ids = torch.randint(0, 50000, (2, 90), generator=generator)
    positions = torch.tensor([[10, 40, 89], [5, 6, 70]])
    return input_ids, positions


def _write_checkpoint(folder, shape: MambaShape, state: dict, weights_name: str = "pytorch_model.bin") -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(shape.to_hub_config()))
    torch.save(state, folder / weights_name)


def test_canonical_names_use_mamba_ssm_spelling(tiny):
    names = set(tiny.canonical_state_dict())
    assert "backbone.embedding.weight" in names
    assert not any(".embeddings." in n for n in names)
    assert {"binary_head.weight", "binary_head.bias", "backbone.norm_f.weight"} <= names


def test_score_reads_the_head_at_the_given_positions_only(tiny, probe_inputs):
    input_ids, positions = probe_inputs
    logits = tiny.score(input_ids, positions)
    hidden = tiny.hidden_states(input_ids)
    expected = tiny.binary_head(hidden[1, 70]).squeeze()
    assert logits.shape == (2, 3)
    torch.testing.assert_close(logits[1, 2], expected.detach())


def test_paper_format_state_dict_loads_strictly_and_ignores_the_lm_head(tmp_path, tiny, probe_inputs):
    state = dict(tiny.canonical_state_dict())
    state["lm_head.weight"] = state["backbone.embedding.weight"].clone()
    _write_checkpoint(tmp_path / "paper", tiny.shape, state)
    loaded = load_model(tmp_path / "paper")
    torch.testing.assert_close(loaded.score(*probe_inputs), tiny.score(*probe_inputs))


def test_transformers_named_weights_load_through_the_weight_map(tmp_path, tiny, probe_inputs):
    state = {k.replace("backbone.embedding.", "backbone.embeddings."): v for k, v in tiny.canonical_state_dict().items()}
    _write_checkpoint(tmp_path / "hf", tiny.shape, state)
    torch.testing.assert_close(load_model(tmp_path / "hf").score(*probe_inputs), tiny.score(*probe_inputs))


def test_a_base_language_model_loads_for_training_but_not_for_scanning(tmp_path, tiny):
    state = {k: v for k, v in tiny.canonical_state_dict().items() if not k.startswith("binary_head.")}
    state["lm_head.weight"] = state["backbone.embedding.weight"]
    _write_checkpoint(tmp_path / "base", tiny.shape, state)
    with pytest.raises(CheckpointError, match="base language model without a binary_head"):
        load_model(tmp_path / "base")
    model = load_model(tmp_path / "base", require_head=False)
    torch.testing.assert_close(model.layers[1].mixer.in_proj.weight, tiny.layers[1].mixer.in_proj.weight)


def test_an_unexpected_key_is_an_error_naming_it(tmp_path, tiny):
    state = dict(tiny.canonical_state_dict())
    state["backbone.layers.9.mixer.D"] = torch.zeros(8)
    _write_checkpoint(tmp_path / "extra", tiny.shape, state)
    with pytest.raises(CheckpointError, match=r"unexpected \['backbone.layers.9.mixer.D'\]"):
        load_model(tmp_path / "extra")


def test_a_missing_backbone_weight_is_an_error_even_without_a_head_requirement(tmp_path, tiny):
    state = {k: v for k, v in tiny.canonical_state_dict().items() if k != "backbone.layers.0.mixer.A_log"}
    _write_checkpoint(tmp_path / "missing", tiny.shape, state)
    with pytest.raises(CheckpointError, match="backbone.layers.0.mixer.A_log"):
        load_model(tmp_path / "missing", require_head=False)


def test_a_shape_mismatch_is_an_error(tmp_path, tiny):
    wider = MambaShape(**{**tiny.shape.model_dump(), "d_model": 96})
    _write_checkpoint(tmp_path / "wide", wider, tiny.canonical_state_dict())
    with pytest.raises(CheckpointError, match="backbone.embedding.weight has shape"):
        load_model(tmp_path / "wide")


def test_safetensors_round_trip_gives_identical_scores(tmp_path, tiny, probe_inputs):
    save_weights(tiny, tmp_path / "saved")
    assert (tmp_path / "saved" / "model.safetensors").is_file()
    torch.testing.assert_close(load_model(tmp_path / "saved").score(*probe_inputs), tiny.score(*probe_inputs), rtol=0, atol=0)


def test_state_spaces_config_reads_as_the_130m_shape(tmp_path):
    config = {"d_model": 768, "d_intermediate": 0, "n_layer": 24, "vocab_size": 50277, "ssm_cfg": {"layer": "Mamba2"},
              "attn_layer_idx": [], "attn_cfg": {}, "rms_norm": True, "residual_in_fp32": True,
              "fused_add_norm": True, "pad_vocab_size_multiple": 16, "tie_embeddings": True}
    (tmp_path / "config.json").write_text(json.dumps(config))
    shape = read_shape(tmp_path)
    assert shape == model_shape("130m")
    assert (shape.padded_vocab_size, shape.nheads) == (50288, 24)


def test_a_mamba1_config_is_refused(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"d_model": 768, "n_layer": 24, "vocab_size": 50277,
                                                      "ssm_cfg": {"layer": "Mamba1"}}))
    with pytest.raises(ValueError, match="needs a Mamba2 backbone"):
        read_shape(tmp_path)


def test_a_missing_folder_that_is_not_a_hub_id_names_the_input():
    with pytest.raises(CheckpointError, match="no such folder"):
        load_model("/nonexistent/scanner")


def test_the_mamba_ssm_backend_refuses_the_cpu():
    with pytest.raises(ValueError, match="CUDA only"):
        ScannerModel(model_shape("small"), backend="mamba_ssm", device="cpu")
