"""`executor: ray`: the same stages on a real local Ray cluster (started once for this file) give the same
survivors, rejected files and stage records as the local engine."""

from __future__ import annotations

import json
import sys
from array import array
from collections import Counter
from pathlib import Path

import pytest

from tunesmith.curate.engine import Engine, StageRun
from tunesmith.curate.minhash import WordCache
from tunesmith.curate.ray_executor import MISSING_RAY, RayEngine, import_ray
from tunesmith.curate.record import Example, Message
from tunesmith.curate.sources import SourceConfig, read_source
from tunesmith.curate.stage import FilterStage, GlobalStage, Reject, Stage, StageContext, build_stage
from tunesmith.errors import UsageError

from .engine_helpers import comparable

FIXTURES = Path(__file__).parent.parent / "fixtures"


@pytest.fixture(scope="module")
def ray_cluster():
    """One local 2-CPU cluster for the module (~4 s to start); RayEngine uses it and leaves it running."""
    import ray
    from ray import cloudpickle

    # the actors cannot import this test module by name: its stages travel by value
    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    ray.init(num_cpus=2, include_dashboard=False)
    yield ray
    ray.shutdown()
    cloudpickle.unregister_pickle_by_value(sys.modules[__name__])


class ShortWords(FilterStage):
    """Drops rows whose user turn has a word over 9 letters; its accumulator: word counts and the first ids."""

    name = "short_words"

    def open(self, ctx):
        return {"words": Counter(), "first": []}

    def keep(self, example, state, ctx):
        words = example.messages[0].content.split()
        if any(len(word) > 9 for word in words):
            return Reject("long_word", "a word over 9 letters", field="messages[0].content")
        state["words"].update(words)
        state["first"] = (state["first"] + [example.id])[:5]
        return example

    def merge(self, state, other):
        state["words"].update(other["words"])
        state["first"] = (state["first"] + other["first"])[:5]
        return state

    def close(self, state, ctx):
        ctx.finding("words", dict(sorted(state["words"].items())))
        ctx.finding("first_ids", state["first"])


class FirstText(GlobalStage):
    """Keeps the smallest position of each user text (8-byte keys)."""

    name = "first_text"

    def open(self, ctx):
        return {"keys": array("q"), "drop": set()}

    def add_keys(self, batch, start, state, ctx):
        state["keys"].extend(hash(ex.messages[0].content) for ex in batch)

    def resolve(self, state, rows, ctx):
        seen: dict[int, int] = {}
        state["drop"] = {pos for pos, key in enumerate(state["keys"]) if seen.setdefault(key, pos) != pos}

    def apply(self, batch, start, state, ctx):
        kept = []
        for offset, example in enumerate(batch):
            if start + offset in state["drop"]:
                ctx.reject(example, "repeat", "same user text as an earlier row")
            else:
                kept.append(example)
        return kept

    def close(self, state, ctx):
        ctx.finding("repeats", len(state["drop"]))


class Shout(Stage):
    """A row stage that changes rows (upper-cases the answer) and rejects empty ones; its setup runs per actor."""

    name = "shout"
    mode = "row"

    def setup(self, ctx):
        self.suffix = ctx.extra["suffix"]  # what a tokenizer would be: loaded once per process from ctx.extra

    def open(self, ctx):
        return 0

    def process_batch(self, batch, state, ctx):
        kept = []
        for example in batch:
            if example.messages[1].content.strip():
                user, answer = example.messages
                kept.append(example.replace(messages=(user, answer._replace(content=answer.content.upper()
                                                                              + self.suffix))))
            else:
                ctx.reject(example, "empty_answer")
        return kept

    def merge(self, state, other):
        return state  # an int accumulator is immutable: the engine keeps the returned one


def made_rows(n: int) -> list[Example]:
    words = ["alpha", "beta", "gamma", "extraordinary", "delta"]
    rows = []
    for i in range(n):
        user = f"{words[i % 5]} {words[(i * 3) % 5]} {i % 17}"
        answer = "" if i % 11 == 0 else f"answer {i}"
        rows.append(Example(id=f"s:{i}", source="s.jsonl", row=i, line=i + 1,
                            messages=(Message("user", user), Message("assistant", answer))))
    return rows


def run_with(engine_class, stages: list[Stage], rows: list[Example], folder: Path, extra: dict, **options):
    """(survivors as JSON, {stage: rejected file bytes}, records without seconds) of one engine run."""
    runs = [StageRun(stage, StageContext(stage.name, folder / "rejected", seed=3, extra=extra)) for stage in stages]
    kept: list[Example] = []
    records = engine_class(runs, folder / "spill", **options).run(rows, kept.extend)
    rejected = {p.name: p.read_bytes() for p in sorted((folder / "rejected").glob("*.jsonl"))}
    assert not any((folder / "spill").glob("*")), "spilled rows left behind"
    return [json.dumps(e.to_json()) for e in kept], rejected, [comparable(r) for r in records]


def test_row_global_row_chain_on_ray_equals_local_engine(ray_cluster, tmp_path):
    rows = made_rows(157)
    chain = lambda: [ShortWords(), FirstText(), Shout()]  # noqa: E731 - fresh stages per engine
    local = run_with(Engine, chain(), rows, tmp_path / "local", {"suffix": "!"}, batch_size=4, workers=1)
    ray = run_with(RayEngine, chain(), rows, tmp_path / "ray", {"suffix": "!"}, batch_size=4, workers=2)
    assert ray == local
    assert ray_cluster.is_initialized()  # a Ray it did not start is left running
    survivors, rejected, records = ray
    assert set(rejected) == {"short_words.jsonl", "first_text.jsonl", "shout.jsonl"}
    assert [r["rows_in"] - r["rows_out"] for r in records] == [r["rows_rejected"] for r in records]
    assert all(r["rows_rejected"] > 0 for r in records)
    answers = [json.loads(line)["messages"][1]["content"] for line in survivors]
    assert all(a.endswith("!") and a[:-1] == a[:-1].upper() for a in answers)  # Shout's setup ran on the actors
    assert records[0]["findings"]["first_ids"] == ["s:0", "s:2", "s:4", "s:5", "s:7"]


def test_default_stages_on_ray_equal_local_engine(ray_cluster, tmp_path, tiny_tokenizer_dir):
    """The real default stages, whatever mode each has today (whole ones run on the driver): same survivors,
    rejected files and findings."""
    from transformers import AutoTokenizer

    source = tmp_path / "mixed.jsonl"
    lines = (FIXTURES / "sft_tiny.jsonl").read_text(encoding="utf-8").splitlines()
    bad = ['{"messages": [{"role": "user", "content": "x"}', '{"messages": []}',
           '{"messages": [{"role": "user", "content": "Call me at +1 415 555 0100 or mail ana@example.com"}, '
           '{"role": "assistant", "content": "Noted."}]}']
    source.write_text("\n".join(lines + lines[:4] + bad) + "\n", encoding="utf-8")
    rows, _ = read_source(SourceConfig(path=str(source)))
    tokenizer = AutoTokenizer.from_pretrained(tiny_tokenizer_dir)
    names = ["validate", "exact_dedup", "near_dedup", "pii", "bias_audit", "token_stats", "split"]
    for engine_class, folder in ((Engine, tmp_path / "local"), (RayEngine, tmp_path / "ray")):
        extra = {"word_cache": WordCache(), "tokenizer": tokenizer, "tokenizer_name": str(tiny_tokenizer_dir)}
        stages = [build_stage({"stage": name}) for name in names]
        result = run_with(engine_class, stages, rows, folder, extra, batch_size=3, workers=2)
        if engine_class is Engine:
            local = result
    assert result == local
    survivors, rejected, records = result
    assert [r["name"] for r in records] == names and survivors
    assert {"validate.jsonl", "exact_dedup.jsonl"} <= set(rejected)


def test_ray_engine_with_nothing_to_run_reports_empty_stages(ray_cluster, tmp_path):
    kept, rejected, records = run_with(RayEngine, [ShortWords(), Shout()], [], tmp_path, {"suffix": "!"},
                                       workers=2)
    assert kept == [] and rejected == {}
    assert [(r["rows_in"], r["findings"]) for r in records] == [(0, {"words": {}, "first_ids": []}), (0, {})]


def test_missing_ray_is_one_line_usage_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # what `import ray` meets where Ray is not installed
    with pytest.raises(UsageError, match=r"^executor: ray needs Ray: pip install 'tunesmith\[ray\]'$"):
        import_ray()
    assert "\n" not in MISSING_RAY

