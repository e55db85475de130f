"""LoRA training on a tiny random Llama, offline on CPU: the run folder, changed LoRA weights, NF4, NaN stop.

Run: .venv/bin/python -m pytest tests/train/test_trainer.py -q
"""

import json
from pathlib import Path

import pytest
import torch

from tunesmith.artifacts import read_run
from tunesmith.train.callbacks import NonFiniteLoss
from tunesmith.train.config import TrainConfig
from tunesmith.train.trainer import train

from .runs import config_for, lora_tensors


def test_lora_run_writes_the_run_folder_and_changes_every_lora_weight(tmp_path, card, tiny_model_dir):
    run = train(config_for(card, tiny_model_dir, tmp_path, quantization="none"))
    assert {p.name for p in run.iterdir()} == {"adapter", "config.resolved.yaml", "metrics.jsonl", "run.json"}
    assert {"adapter_config.json", "adapter_model.safetensors", "tokenizer.json"} <= {p.name for p in (run / "adapter").iterdir()}
    manifest = read_run(run)
    assert manifest.card_fingerprint == json.loads(card.read_text())["fingerprint"]
    assert manifest.quantization == "none" and manifest.device == "cpu" and manifest.base_model_sha256
    steps = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [s["step"] for s in steps if "loss" in s] == [1, 2, 3, 4]
    assert any("eval_loss" in s for s in steps) and all(s["peak_memory_mb"] > 0 for s in steps)
    weights = lora_tensors(run)
    assert weights and all(v.abs().sum() > 0 for k, v in weights.items() if "lora_B" in k)  # B starts at zero
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    fresh = get_peft_model(AutoModelForCausalLM.from_pretrained(tiny_model_dir),
                           LoraConfig(r=4, lora_alpha=8, target_modules="all-linear", task_type="CAUSAL_LM"))
    initial = {k.replace(".default", ""): v for k, v in fresh.state_dict().items() if "lora_A" in k}
    changed = [k for k, v in weights.items() if "lora_A" in k and not torch.equal(v, initial[k])]
    assert len(changed) == sum("lora_A" in k for k in weights)


def test_nf4_on_cpu_uses_4bit_layers_and_loss_falls(tmp_path, card, tiny_model_dir):
    from bitsandbytes.nn import Linear4bit

    from tunesmith.train.model import load_model_for_training

    config = config_for(card, tiny_model_dir, tmp_path, quantization="nf4", max_steps=12, eval_split=None)
    model, *_ = load_model_for_training(config)
    assert any(isinstance(m, Linear4bit) for m in model.modules())
    run = train(config)
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in records if "loss" in r]
    assert len(losses) == 12
    assert read_run(run).quantization == "nf4"
    assert sum(losses[-3:]) / 3 < sum(losses[:3]) / 3


def test_a_non_finite_loss_stops_training_naming_the_step(tmp_path, card, tiny_model_dir, monkeypatch):
    from transformers import Trainer

    real = Trainer.compute_loss

    def nan_loss(self, *args, **kwargs):
        result = real(self, *args, **kwargs)
        return result * float("nan") if torch.is_tensor(result) else (result[0] * float("nan"), *result[1:])

    monkeypatch.setattr(Trainer, "compute_loss", nan_loss)
    with pytest.raises(NonFiniteLoss, match="loss became nan at step 1"):
        train(config_for(card, tiny_model_dir, tmp_path, quantization="none"))
    assert not (tmp_path / "runs" / "r1" / "run.json").exists()


def test_cli_train_prints_the_run_folder_and_refuses_a_changed_card(tmp_path, card, tiny_model_dir, capsys):
    from tunesmith.cli import main

    root = Path(__file__).parents[2]
    args = ["train", str(root / "configs" / "train" / "smollm2-lora.yaml"), f"card={card}", f"model={tiny_model_dir}",
            f"output_dir={tmp_path / 'runs'}", "run_id=cli", "max_steps=2", "batch_size=4", "eval_steps=1"]
    assert main(args) == 0
    assert capsys.readouterr().out.strip().endswith("cli")
    [shard] = card.parent.glob("train-*.parquet")  # the train split's one shard, changed after curation
    with open(shard, "ab") as handle:
        handle.write(b"\0")
    assert main([*args[:-3], "run_id=cli2", "max_steps=2"]) == 2
    assert not (tmp_path / "runs" / "cli2").exists()


@pytest.mark.slow
def test_a_few_steps_on_the_embedded_smollm2(tmp_path, card):
    """The real default model: converted from its GGUF once per session, LoRA-trained for two steps on CPU."""
    run = train(TrainConfig(card=str(card), output_dir=str(tmp_path / "runs"), run_id="smol", max_steps=2,
                            batch_size=2, max_seq_len=256, eval_split=None, lora={"r": 4, "alpha": 8}))
    manifest = read_run(run)
    assert manifest.base_model == "smollm2-135m-instruct" and manifest.quantization == "none"
    assert manifest.base_model_sha256 and len(manifest.base_model_sha256) == 64
    losses = [json.loads(line)["loss"] for line in (run / "metrics.jsonl").read_text().splitlines()
              if "loss" in json.loads(line)]
    assert len(losses) == 2 and all(0 < loss < 20 for loss in losses)


def test_merge_and_generate_after_a_run(tmp_path, card, tiny_model_dir, capsys):
    from transformers import AutoModelForCausalLM

    from tunesmith.cli import main
    from tunesmith.models import load_tuned_model

    run = train(config_for(card, tiny_model_dir, tmp_path, quantization="none", eval_split=None))
    assert main(["merge", str(run)]) == 0
    merged_dir = Path(capsys.readouterr().out.strip())
    assert merged_dir == run / "merged" and (merged_dir / "model.safetensors").is_file()
    merged = AutoModelForCausalLM.from_pretrained(merged_dir)
    tuned, tokenizer = load_tuned_model(run)
    ids = tokenizer("Extract the order", return_tensors="pt", add_special_tokens=False)["input_ids"]
    with torch.no_grad():  # merged weights compute what base + adapter compute
        assert torch.allclose(merged(ids).logits, tuned(ids).logits, atol=1e-4)
    from tunesmith.train.merge import answer

    assert main(["generate", str(run), "Extract the order", "--max-new-tokens", "5"]) == 0
    printed = capsys.readouterr().out
    assert printed == answer(run, "Extract the order", max_new_tokens=5) + "\n"  # greedy: the same answer


def test_tutorial_recipe_runs_with_the_alpaca_prompt_format(tmp_path, card, tiny_model_dir):
    from tunesmith.config import load_config

    recipe = Path(__file__).parents[2] / "configs" / "recipes" / "tutorial-lora.yaml"
    config = load_config(TrainConfig, recipe, [f"card={card}", f"model={tiny_model_dir}", "max_steps=2",
                                               f"output_dir={tmp_path / 'runs'}", "run_id=tutorial", "eval_split=null"])
    assert (config.lora.r, config.lora.alpha, config.lora.target_modules) == (8, 32, ["q_proj", "v_proj"])
    run = train(config)
    template = json.loads((run / "adapter" / "tokenizer_config.json").read_text()).get("chat_template") or \
        (run / "adapter" / "chat_template.jinja").read_text()
    assert "### Instruction:" in template  # saved with the adapter, so generate uses the same format
    assert {k.split(".lora_")[0].rsplit(".", 1)[-1] for k in lora_tensors(run)} == {"q_proj", "v_proj"}
