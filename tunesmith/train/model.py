"""The base model with LoRA adapters: 4-bit NF4 (QLoRA), 8-bit or full precision, one code path for all."""

from __future__ import annotations

import logging
from pathlib import Path

import torch

from tunesmith.models import (
    BaseIdentity,
    base_identity,
    compute_dtype,
    load_causal_lm,
    load_tokenizer,
    resolve_model_dir,
)
from tunesmith.train.config import TrainConfig

log = logging.getLogger(__name__)


def resolve_quantization(requested: str, cuda: bool) -> str:
    """`auto` means NF4 on CUDA and plain LoRA on CPU; say which, since it changes speed and memory."""
    if requested == "auto":
        chosen = "nf4" if cuda else "none"
        log.info("quantization auto -> %s (%s)", chosen, "CUDA found" if cuda else "no CUDA: LoRA on full-precision weights")
        return chosen
    if requested != "none" and not cuda:
        log.warning("quantization %s on CPU uses bitsandbytes' CPU kernels: it works, but slowly", requested)
    return requested


def _quantization_kwargs(quantization: str, cuda: bool) -> dict:
    from transformers import BitsAndBytesConfig

    device_map = {"": 0 if cuda else "cpu"}
    if quantization == "nf4":
        config = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                                    bnb_4bit_compute_dtype=compute_dtype())
        return {"quantization_config": config, "device_map": device_map}
    if quantization == "int8":
        return {"quantization_config": BitsAndBytesConfig(load_in_8bit=True), "device_map": device_map}
    return {"dtype": compute_dtype()}


def training_base(location: Path | str) -> BaseIdentity:
    """The base's weights sha256 and fingerprint (config, weights, tokenizer files; empty for hub ids): run.json
    and started.json record them, --resume and eval check them."""
    return base_identity(location)


def load_model_for_training(config: TrainConfig):
    """(peft model, tokenizer, quantization used, device, base identity)."""
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training
    from transformers import set_seed

    cuda = torch.cuda.is_available()
    quantization = resolve_quantization(config.quantization, cuda)
    location = resolve_model_dir(config.model, with_weights=True)
    tokenizer = load_tokenizer(config.model, trust_remote_code=config.trust_remote_code,
                               chat_template=config.chat_template)
    set_seed(config.seed)  # any weight missing from the checkpoint is initialised from the run's seed too
    model = load_causal_lm(location, trust_remote_code=config.trust_remote_code,
                           **_quantization_kwargs(quantization, cuda))
    model.config.use_cache = False  # no KV cache in training; padding-free batches need it off to isolate rows
    if quantization != "none":
        model = prepare_model_for_kbit_training(
            model, use_gradient_checkpointing=True, gradient_checkpointing_kwargs={"use_reentrant": False}
        )
    lora = LoraConfig(r=config.lora.r, lora_alpha=config.lora.alpha, lora_dropout=config.lora.dropout,
                      target_modules=config.lora.target_modules, task_type="CAUSAL_LM")
    # seeded here, where the LoRA A matrices are drawn, not at the start of train(): whatever ran before (the
    # embedded model's conversion on a cold cache builds a randomly initialised model) must not shape the adapter
    set_seed(config.seed)
    model = get_peft_model(model, lora)
    trainable, total = model.get_nb_trainable_parameters()
    log.info("LoRA: %s trainable of %s parameters (%.2f%%)", f"{trainable:,}", f"{total:,}", 100 * trainable / total)
    return model, tokenizer, quantization, "cuda" if cuda else "cpu", training_base(location)
