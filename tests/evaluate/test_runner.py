"""`tunesmith eval` on the tiny model: base and tuned scored on the same test rows, eval folder contents.

Run: .venv/bin/python -m pytest tests/evaluate/test_runner.py -q
"""

import json
from pathlib import Path

import pytest

from tunesmith.artifacts import read_eval
from tunesmith.evaluate.config import EvalConfig
from tunesmith.evaluate.runner import eval_id, prompt_and_references, run_eval

from .runs import trained_run


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, tiny_tokenizer_dir, tiny_model_dir) -> Path:
    return trained_run(tmp_path_factory.mktemp("eval"), tiny_tokenizer_dir, tiny_model_dir, max_steps=3)


def small_eval(run_dir: Path, **extra) -> EvalConfig:
    return EvalConfig(run=str(run_dir / "run.json"), generation={"max_new_tokens": 6, "batch_size": 4},
                      bootstrap={"resamples": 200}, **extra)


def test_eval_scores_both_models_on_the_same_rows_and_writes_the_folder(run_dir):
    folder = run_eval(small_eval(run_dir))
    assert folder == run_dir / "eval" / read_eval(folder).eval_id
    assert {p.name for p in folder.iterdir()} == {"eval.json", "samples.jsonl", "config.resolved.yaml"}
    result = read_eval(folder)
    run = json.loads((run_dir / "run.json").read_text())
    assert (result.run_id, result.card_fingerprint, result.split) == ("r", run["card_fingerprint"], "test")
    names = [m.name for m in result.metrics]
    assert names == ["bleu", "chrf", "rouge1", "rouge2", "rougeL", "rougeLsum", "exact_match", "response_perplexity",
                     "sequence_perplexity", "general_text_perplexity"]
    for metric in result.metrics:
        assert metric.ci_low <= metric.delta <= metric.ci_high or metric.ci_low == metric.ci_high
        assert metric.n == (result.n_examples if metric.name != "general_text_perplexity" else metric.n)
    assert result.metric("bleu").version.startswith("nrefs:1|")
    samples = [json.loads(line) for line in (folder / "samples.jsonl").read_text().splitlines()]
    assert len(samples) == result.n_examples
    assert all(s["prompt"][-1]["role"] == "user" and s["references"] for s in samples)
    assert set(samples[0]["scores"]["rougeL"]) == {"base", "tuned"}
    assert result.generation["max_new_tokens"] == 6 and result.generation["do_sample"] is False


def test_the_same_inputs_reuse_the_eval_and_new_settings_get_their_own_folder(run_dir):
    first = read_eval(run_eval(small_eval(run_dir)))
    again = read_eval(run_eval(small_eval(run_dir)))
    assert again.created_at == first.created_at  # reused, not recomputed
    changed = read_eval(run_eval(small_eval(run_dir, max_examples=3)))
    assert changed.eval_id != first.eval_id and changed.n_examples == 3
    assert read_eval(run_dir / "eval" / first.eval_id).created_at == first.created_at  # kept, not replaced
    assert not [p for p in (run_dir / "eval").iterdir() if p.name.startswith(".eval")]  # no staging folders left


def test_after_evals_only_the_eval_folders_and_the_folder_lock_remain(run_dir):
    """The per-id lock (`.<eval_id>.lock`) goes once its eval folder is written, reused or recomputed with reuse off;
    `eval/.lock`, which names the last writer of the folder, stays (as every folder lock does)."""
    made = {run_eval(small_eval(run_dir, max_examples=2)).name, run_eval(small_eval(run_dir, max_examples=2)).name,
            run_eval(small_eval(run_dir, max_examples=2), reuse=False).name}
    evals = {p.name for p in (run_dir / "eval").iterdir() if (p / "eval.json").is_file()}
    assert made <= evals and {p.name for p in (run_dir / "eval").iterdir()} == evals | {".lock"}


def test_default_metrics_and_the_same_list_written_out_give_one_eval_id(tmp_path):
    written = EvalConfig(run="r/run.json", metrics=["bleu", "chrf", "rouge", "exact_match"])
    assert EvalConfig(run="r/run.json").metrics == written.metrics  # "rouge" expanded either way
    (tmp_path / "adapter").mkdir()
    (tmp_path / "adapter" / "adapter_model.safetensors").write_bytes(b"weights")
    assert eval_id(EvalConfig(run="r/run.json"), tmp_path, "ab" * 32, None) == eval_id(written, tmp_path, "ab" * 32,
                                                                                        None)


def test_the_base_model_is_the_adapter_disabled(run_dir):
    """With a zero adapter, base and tuned are the same model: identical answers and perplexities."""
    from safetensors.torch import load_file, save_file

    zero = run_dir.parent / "zero"
    import shutil

    shutil.copytree(run_dir, zero)
    shutil.rmtree(zero / "eval", ignore_errors=True)
    weights = load_file(zero / "adapter" / "adapter_model.safetensors")
    save_file({k: v * 0 if "lora_B" in k else v for k, v in weights.items()},
              str(zero / "adapter" / "adapter_model.safetensors"))
    result = read_eval(run_eval(small_eval(zero)))
    for metric in result.metrics:
        assert metric.delta == pytest.approx(0, abs=1e-9) and (metric.ci_low, metric.ci_high) == pytest.approx((0, 0))
        assert metric.wins in (None, 0) and metric.losses in (None, 0)


def test_references_come_from_the_last_assistant_turn_or_the_row():
    row = {"id": "a", "messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "x"},
                                   {"role": "user", "content": "q2"}, {"role": "assistant", "content": "y"}]}
    prompt, refs = prompt_and_references(row)
    assert [m["content"] for m in prompt] == ["q", "x", "q2"] and refs == ["y"]
    assert prompt_and_references({**row, "references": ["y", "z"]})[1] == ["y", "z"]


def test_cli_eval_report_and_compare(run_dir, tmp_path, capsys):
    from tunesmith.cli import main

    config = Path(__file__).parents[2] / "configs" / "eval" / "default.yaml"
    args = ["eval", str(config), f"run={run_dir}", "generation.max_new_tokens=4", "bootstrap.resamples=100"]
    assert main(args) == 0
    printed = Path(capsys.readouterr().out.strip().splitlines()[-1])
    assert printed.name == "eval.json" and printed.parent.parent == run_dir / "eval"
    assert main(["report", str(run_dir)]) == 0
    assert capsys.readouterr().out.strip() == str(run_dir / "report.html")
    out = tmp_path / "compare.html"
    assert main(["report", "compare", str(run_dir), str(run_dir), "--out", str(out)]) == 0
    assert out.is_file() and "r" in out.read_text()
    assert main(["eval", str(config), f"run={run_dir}", "metrics=[blue]"]) == 2  # did-you-mean, no traceback
    error = " ".join(capsys.readouterr().err.split())  # the log wraps long lines
    assert "metrics" in error and "'blue'" in error and "Traceback" not in error
