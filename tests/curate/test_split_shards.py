"""Split files as Parquet shards: same rows as JSONL, cut by row count, byte-stable, hashed per shard on the card,
readable by `datasets.load_dataset(<version folder>)`, and old one-file cards still read.

Run: .venv/bin/python -m pytest tests/curate/test_split_shards.py -q
"""

import json
from pathlib import Path

import pytest

import tunesmith.curate.pipeline as curate_pipeline
from tunesmith.artifacts import CARD_FILE, CardError, SplitRecord, open_card, read_card, split_rows
from tunesmith.card_diff import verify_card
from tunesmith.cli import main
from tunesmith.config import load_config
from tunesmith.curate import card as card_module
from tunesmith.curate.card import SplitWriter, write_splits
from tunesmith.curate.config import CurateConfig
from tunesmith.curate.pipeline import run_curate
from tunesmith.curate.record import Example, Message

FIXTURE = Path(__file__).parent.parent / "fixtures" / "sft_tiny.jsonl"
TOOL_CALLS = [{"id": "c1", "type": "function", "function": {"name": "weather", "arguments": '{"city": "Oslo"}'}}]


def shaped_rows() -> list[Example]:
    """One row of every shape a split file holds: plain, tool use, preference, KTO (both labels), meta, CJK."""
    chat = (Message("user", "Hi"), Message("assistant", "Hello."))
    tool_turns = (Message("system", "Use tools."), Message("user", "Weather in Oslo?"),
                  Message("assistant", "", tool_calls=TOOL_CALLS), Message("tool", "12 C", tool_call_id="c1",
                                                                          name="weather"),
                  Message("assistant", "It is 12 C."))
    return [
        Example(id="s:0", source="s.jsonl", row=0, line=1, messages=chat, split="train"),
        Example(id="s:1", source="s.jsonl", row=1, line=2, messages=tool_turns, split="train",
                tools=[{"type": "function", "function": {"name": "weather", "parameters": {"type": "object"}}}]),
        Example(id="p:0", source="p.parquet", row=0, line=None, messages=chat, split="test",
                rejected=(Message("assistant", "Go away."),), group="near:3"),
        Example(id="k:0", source="k.jsonl", row=0, line=1, messages=chat, label=False, split="train"),
        Example(id="k:1", source="k.jsonl", row=1, line=2, messages=chat, label=True, split="validation"),
        Example(id="m:0", source="m.csv", row=0, line=2, split="train",
                messages=(Message("user", "用中文回答：天空为什么是蓝色的？"), Message("assistant", "因为瑞利散射。🌤")),
                meta={"zeta": 1.5, "category": "科学", "nested": {"b": [1, None, True], "a": "x"}, "n": None}),
    ]


def all_rows(directory: Path, splits: dict[str, SplitRecord]) -> dict[str, list[dict]]:
    return {name: list(split_rows(directory, split, name)) for name, split in splits.items()}


def test_parquet_shards_read_back_as_the_very_rows_the_jsonl_files_hold(tmp_path):
    rows = shaped_rows()
    jsonl = write_splits(rows, (tmp_path / "j").mkdir() or tmp_path / "j", "jsonl")
    parquet = write_splits(rows, (tmp_path / "p").mkdir() or tmp_path / "p", "parquet", shard_rows=2)
    from_jsonl, from_parquet = all_rows(tmp_path / "j", jsonl), all_rows(tmp_path / "p", parquet)
    assert from_parquet == from_jsonl
    # the same key order too: a chat template that dumps tool calls or meta sees the same text
    assert json.dumps(from_parquet, ensure_ascii=False) == json.dumps(from_jsonl, ensure_ascii=False)
    assert from_parquet["train"][1]["messages"][2]["tool_calls"] == TOOL_CALLS
    assert "label" not in from_parquet["train"][0] and from_parquet["train"][2]["label"] is False
    assert [s.file for s in parquet["train"].shards] == ["train-00000-of-00002.parquet",
                                                         "train-00001-of-00002.parquet"]
    assert [s.rows for s in parquet["train"].shards] == [2, 2] and parquet["train"].file is None
    assert jsonl["train"].file == "train.jsonl" and jsonl["train"].shards is None


def write_in_batches(rows: list[Example], directory: Path, batch: int) -> dict[str, SplitRecord]:
    directory.mkdir()
    writer = SplitWriter(directory, "parquet", shard_rows=5)
    for start in range(0, len(rows), batch):
        writer.write(rows[start:start + batch])
    return writer.close()


def test_shards_and_their_bytes_do_not_depend_on_the_batch_size(tmp_path, monkeypatch):
    monkeypatch.setattr(card_module, "ROW_GROUP_ROWS", 2)  # several row groups per shard, cut inside batches
    rows = [Example(id=f"s:{i}", source="s.jsonl", row=i, line=i + 1, split=("train", "test")[i % 3 == 0],
                    messages=(Message("user", f"question {i}"), Message("assistant", f"answer {i}")))
            for i in range(23)]
    records = [write_in_batches(rows, tmp_path / f"b{batch}", batch) for batch in (1, 3, 7, 23)]
    assert all(r == records[0] for r in records)
    assert [s.rows for s in records[0]["train"].shards] == [5, 5, 5]
    for name in {s.file for split in records[0].values() for s in split.shards}:
        assert len({(tmp_path / f"b{batch}" / name).read_bytes() for batch in (1, 3, 7, 23)}) == 1


def test_a_rerun_writes_byte_identical_shards(tmp_path):
    first = write_splits(shaped_rows(), (tmp_path / "a").mkdir() or tmp_path / "a", "parquet")
    second = write_splits(shaped_rows(), (tmp_path / "b").mkdir() or tmp_path / "b", "parquet")
    assert first == second
    names = sorted(p.name for p in (tmp_path / "a").iterdir())
    assert names == sorted(p.name for p in (tmp_path / "b").iterdir())
    assert all((tmp_path / "a" / n).read_bytes() == (tmp_path / "b" / n).read_bytes() for n in names)


def curate_config(tmp_path: Path, tokenizer: Path, **extra) -> CurateConfig:
    config = {
        "name": "tiny", "output_dir": str(tmp_path / "out"), "tokenizer": str(tokenizer),
        "sources": [{"path": str(FIXTURE)}],
        "stages": [{"stage": "validate", "max_chars": 5000}, {"stage": "exact_dedup"},
                   {"stage": "token_stats", "max_seq_len": 256},
                   {"stage": "split", "ratios": {"train": 0.6, "validation": 0.2, "test": 0.2}}],
        "gates": {"min_rows": 2}, **extra,
    }
    path = tmp_path / "curate.yaml"
    path.write_text(json.dumps(config))
    return load_config(CurateConfig, path, [])


@pytest.fixture
def sharded_card(tmp_path, tiny_tokenizer_dir, monkeypatch) -> Path:
    """A real curated version written as Parquet shards of 4 rows."""
    config = curate_config(tmp_path, tiny_tokenizer_dir, shard_rows=4)
    # the writer the pipeline uses, given the config's format (what pipeline._curate_in passes once wired)
    monkeypatch.setattr(curate_pipeline, "SplitWriter",
                        lambda work, *_, **__: SplitWriter(work, config.split_format, config.shard_rows))
    return run_curate(config).directory


def test_load_dataset_reads_the_version_folder_splits_with_their_row_counts(sharded_card):
    from datasets import load_dataset

    card = read_card(sharded_card)
    assert card.config["split_format"] == "parquet" and set(card.splits) == {"train", "validation", "test"}
    assert len(card.splits["train"].shards) > 1  # more rows than one shard holds
    loaded = load_dataset(str(sharded_card))
    assert {name: len(rows) for name, rows in loaded.items()} == {n: s.rows for n, s in card.splits.items()}
    ours = open_card(sharded_card).rows  # what train and eval read
    assert [row["id"] for row in loaded["train"]] == [row["id"] for row in ours["train"]]
    assert [m["content"] for m in loaded["test"][0]["messages"]] == [m["content"] for m in ours["test"][0]["messages"]]
    assert verify_card(sharded_card) == []


def test_an_edited_or_missing_shard_is_refused_naming_the_shard(sharded_card):
    shards = read_card(sharded_card).splits["train"].shards
    edited, missing = sharded_card / shards[1].file, sharded_card / shards[0].file
    edited.write_bytes(edited.read_bytes()[:-9] + b"tampered!")
    problems = verify_card(sharded_card)
    assert any(shards[1].file in p and "sha256 mismatch" in p for p in problems)
    with pytest.raises(CardError, match=shards[1].file):
        open_card(sharded_card)
    missing.unlink()
    assert any(shards[0].file in p and "is missing" in p for p in verify_card(sharded_card))


def test_a_card_whose_shard_list_was_edited_is_caught_by_the_split_hash(sharded_card):
    data = json.loads((sharded_card / CARD_FILE).read_text())
    data["splits"]["train"]["shards"].pop()  # a dropped shard: the rest still match their own hashes
    (sharded_card / CARD_FILE).write_text(json.dumps(data))
    problems = verify_card(sharded_card)
    assert any("splits.train.sha256 is not the hash of its shards' hashes" in p for p in problems)


def test_the_readme_front_matter_lists_every_shard_per_split(sharded_card):
    import yaml

    front = yaml.safe_load((sharded_card / "README.md").read_text(encoding="utf-8").split("---\n")[1])
    card = read_card(sharded_card)
    [config] = front["configs"]
    assert {f["split"]: f["path"] for f in config["data_files"]} == {
        name: [s.file for s in split.shards] for name, split in card.splits.items()}


def test_card_show_names_the_shards(sharded_card, capsys):
    assert main(["card", "show", str(sharded_card)]) == 0
    shown = capsys.readouterr().out
    assert "train-00000-of-" in shown and "shards" in shown


def test_an_old_single_file_card_still_reads_and_validates(tmp_path, tiny_tokenizer_dir):
    version = run_curate(curate_config(tmp_path, tiny_tokenizer_dir, split_format="jsonl")).directory
    card_file = version / CARD_FILE
    data = json.loads(card_file.read_text())
    for split in data["splits"].values():  # a card from before shards: no `shards` key at all
        split.pop("shards", None)
    card_file.write_text(json.dumps(data))
    card = read_card(version)
    assert card.splits["train"].file == "train.jsonl" and card.splits["train"].shards is None
    assert verify_card(version) == []
    rows = open_card(version).rows
    assert {name: len(r) for name, r in rows.items()} == {n: s.rows for n, s in card.splits.items()}


def test_a_split_record_names_a_file_or_shards_not_both():
    shard = {"file": "train-00000-of-00001.parquet", "rows": 1, "sha256": "0" * 64}
    with pytest.raises(ValueError, match="either its one `file` or its `shards`"):
        SplitRecord.model_validate({"file": "train.jsonl", "rows": 1, "sha256": "0" * 64, "shards": [shard]})
    with pytest.raises(ValueError, match="outside|'..'"):
        SplitRecord.model_validate({"rows": 1, "sha256": "0" * 64, "shards": [{**shard, "file": "../x.parquet"}]})
