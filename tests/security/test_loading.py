"""Weights load only from safetensors, never by unpickling; model code runs only with an explicit trust_remote_code.

Run: .venv/bin/python -m pytest tests/security/test_loading.py -q
"""

import pickle
import shutil
from datetime import datetime, timezone

import pytest
import torch
import transformers
from safetensors.torch import load_file

from tunesmith.artifacts import CodeRecord, RunManifest, write_run
from tunesmith.models import ModelError, load_base_model, load_causal_lm, load_tuned_model
from tunesmith.train.config import TrainConfig
from tunesmith.train.model import load_model_for_training


class Payload:
    """Unpickling this creates a file: proof that a pickle was (not) loaded."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return open, (self.marker, "w")


@pytest.fixture
def pickle_only_model(tiny_model_dir, tmp_path):
    """The tiny model with its weights as a booby-trapped `pytorch_model.bin` and no safetensors."""
    folder = tmp_path / "pickled"
    shutil.copytree(tiny_model_dir, folder)
    weights = load_file(folder / "model.safetensors")
    (folder / "model.safetensors").unlink()
    with open(folder / "pytorch_model.bin", "wb") as handle:
        pickle.dump({**weights, "payload": Payload(tmp_path / "PWNED")}, handle)
    return folder


class Recorder:
    """Stands in for a `from_pretrained`: records its keyword arguments, then calls the real one (or stops)."""

    def __init__(self, real=None):
        self.real, self.calls = real, []

    def __call__(self, *args, **kwargs):
        self.calls.append(kwargs)
        if self.real is None:
            raise RuntimeError("stop here")
        return self.real(*args, **kwargs)


def test_a_model_folder_with_only_a_pickle_is_refused_before_anything_opens_it(pickle_only_model, tmp_path,
                                                                               monkeypatch):
    loader = Recorder()
    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", loader)
    with pytest.raises(ModelError, match=r"safetensors only.*pytorch_model\.bin \(pickle files can run code"):
        load_base_model(str(pickle_only_model))
    config = TrainConfig(card="c.json", model=str(pickle_only_model), quantization="none")
    with pytest.raises(ModelError, match="safetensors only"):
        load_model_for_training(config)
    assert loader.calls == [] and not (tmp_path / "PWNED").exists()


def test_behind_the_guard_transformers_is_asked_for_safetensors_only(pickle_only_model, tmp_path, monkeypatch):
    monkeypatch.setattr("tunesmith.models.require_safetensors", lambda *args: None)
    with pytest.raises(ModelError, match="no file named model.safetensors"):
        load_causal_lm(pickle_only_model)
    assert not (tmp_path / "PWNED").exists()


def test_trust_remote_code_stays_off_unless_configured(tiny_model_dir, monkeypatch):
    model_loader = Recorder(transformers.AutoModelForCausalLM.from_pretrained)
    tokenizer_loader = Recorder(transformers.AutoTokenizer.from_pretrained)
    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", model_loader)
    monkeypatch.setattr(transformers.AutoTokenizer, "from_pretrained", tokenizer_loader)
    load_base_model(str(tiny_model_dir))
    load_model_for_training(TrainConfig(card="c.json", model=str(tiny_model_dir), quantization="none"))
    assert [c["trust_remote_code"] for c in model_loader.calls] == [False, False]
    assert all(c["use_safetensors"] is True for c in model_loader.calls)
    assert [c["trust_remote_code"] for c in tokenizer_loader.calls] == [False]
    load_model_for_training(TrainConfig(card="c.json", model=str(tiny_model_dir), quantization="none",
                                        trust_remote_code=True))
    assert model_loader.calls[-1]["trust_remote_code"] is True and tokenizer_loader.calls[-1]["trust_remote_code"]


def fake_run(folder, trust) -> None:
    config = {"card": "c.json"} if trust is None else {"card": "c.json", "trust_remote_code": trust}
    write_run(RunManifest(run_id="r", card_fingerprint="f", card_path="c.json", base_model="base", quantization="none",
                          device="cpu", config=config, final_metrics={}, wall_seconds=0,
                          created_at=datetime.now(timezone.utc),
                          code=CodeRecord(package_version="0", git_sha=None, python="3", libraries={})), folder)
    (folder / "adapter").mkdir(exist_ok=True)


@pytest.mark.parametrize("recorded, passed", [(None, False), (False, False), ("false", False), ("yes", False),
                                              (1, False), (True, True)])
def test_a_run_only_trusts_remote_code_when_its_config_said_true(tmp_path, monkeypatch, recorded, passed):
    fake_run(tmp_path, recorded)
    torch.save({}, tmp_path / "adapter" / "adapter_model.bin")
    with pytest.raises(ModelError, match="adapter_model.safetensors"):  # peft would unpickle the .bin
        load_tuned_model(tmp_path)
    (tmp_path / "adapter" / "adapter_model.safetensors").write_bytes(b"")
    seen = []

    def base_loader(name, trust_remote_code=False):
        seen.append(trust_remote_code)
        raise RuntimeError("stop here")

    monkeypatch.setattr("tunesmith.models.load_base_model", base_loader)
    with pytest.raises(RuntimeError, match="stop here"):
        load_tuned_model(tmp_path)
    assert seen == [passed]
