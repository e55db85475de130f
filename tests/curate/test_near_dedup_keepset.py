"""Tests for near_dedup's findings a user can trust: the greedy keep-set (no chaining: every rejected row is
within the threshold of a KEPT row, and says so), contents rather than role words, normalisation (case, NFKC),
character shingles for Chinese, determinism, tag-mode groups, the exact 61-bit Mersenne hash family, and that
its Jaccard estimates agree with datasketch's. Also exact_dedup's key for preference rows.

Run: .venv/bin/python -m pytest -q -p no:cacheprovider tests/curate/test_near_dedup_keepset.py
"""

import json
import random
import re

import numpy as np
import pytest

from tests.curate.rows import chat_row as make
from tunesmith.curate import minhash
from tunesmith.curate.dedup import ExactDedup
from tunesmith.curate.near_dedup import NearDedup, compared_text
from tunesmith.curate.record import Example, Message
from tunesmith.curate.stage import StageContext

VOCAB = [f"{a}{b}{c}" for a in "bcdfghklmnprstvz" for b in "aeiou" for c in "lmnrst"]
DETAIL = re.compile(r"Jaccard (\d\.\d{3}) with (\S+) \(kept; threshold ([\d.]+)\)")


def run(stage, examples, tmp_path):
    kept, record = stage.run(examples, StageContext(stage.name, tmp_path / "rejected"))
    assert record.rows_in == record.rows_out + record.rows_rejected
    return kept, record


def rejected_rows(tmp_path, name: str = "near_dedup") -> dict[str, dict]:
    path = tmp_path / "rejected" / f"{name}.jsonl"
    return {r["id"]: r for r in map(json.loads, path.read_text().splitlines())} if path.exists() else {}


def jaccard(stage: NearDedup, a: str, b: str) -> float:
    """The exact shingle Jaccard the stage uses, for two texts."""
    shingles, _ = stage.shingles([a, b])
    return float(minhash.exact_jaccard(shingles, np.array([[0, 1]]))[0])


def edited(words: list[str], *positions: int) -> list[str]:
    out = list(words)
    for p in positions:
        out[p] = f"edit{p}"
    return out


def test_a_chain_drops_only_the_middle_row_and_keeps_the_far_end(tmp_path):
    """A~B and B~C above the threshold but J(A, C) below it: only B goes (as A's duplicate); C stays."""
    words = random.Random(1).choices(VOCAB, k=60)
    a, b, c = words, edited(words, 10), edited(words, 10, 40)
    rows = [make(0, " ".join(a)), make(1, " ".join(b)), make(2, " ".join(c)), make(3, " ".join(VOCAB[:60]))]
    stage = NearDedup()
    text = [compared_text(row, "conversation") for row in rows]
    ja_b, jb_c, ja_c = jaccard(stage, text[0], text[1]), jaccard(stage, text[1], text[2]), jaccard(stage, text[0], text[2])
    assert ja_b >= 0.8 and jb_c >= 0.8 and ja_c < 0.8  # the chain the issue describes

    kept, record = run(stage, rows, tmp_path)

    assert [ex.id for ex in kept] == ["s:0", "s:2", "s:3"]
    [cluster] = record.findings["clusters"]
    assert cluster["kept"] == "s:0" and cluster["members"] == [{"id": "s:1", "jaccard": round(ja_b, 3)}]
    assert record.findings["kept_beside_dropped"] == 1  # C: what chaining would have dropped
    assert record.findings["params"]["grouping"] == "greedy keep-set"
    assert DETAIL.fullmatch(rejected_rows(tmp_path)["s:1"]["detail"]).groups() == (f"{ja_b:.3f}", "s:0", "0.8")


def test_every_rejected_row_is_within_the_threshold_of_a_kept_row(tmp_path):
    """Many chains of growing edits: each rejected row names a kept row, and its recorded and true J pass."""
    rng = random.Random(2)
    rows, texts = [], {}
    for _ in range(15):
        words = rng.choices(VOCAB, k=60)
        for step in range(5):  # each variant one more word away from the base: a chain of near-duplicates
            text = " ".join(edited(words, *range(3, 3 + 9 * step, 9)))
            rows.append(make(len(rows), text))
            texts[rows[-1].id] = compared_text(rows[-1], "conversation")
    stage = NearDedup()
    kept, record = run(stage, rows, tmp_path)

    kept_ids = {ex.id for ex in kept}
    rejected = rejected_rows(tmp_path)
    assert len(rejected) >= 15 and record.findings["kept_beside_dropped"] > 0  # chains were cut, not followed
    for row_id, row in rejected.items():
        j, keeper, _ = DETAIL.fullmatch(row["detail"]).groups()
        assert keeper in kept_ids and float(j) >= 0.8
        assert jaccard(stage, texts[row_id], texts[keeper]) >= 0.8
    for cluster in record.findings["clusters"]:
        assert cluster["kept"] in kept_ids
        assert all(m["jaccard"] >= 0.8 and m["id"] in rejected for m in cluster["members"])


def test_the_same_input_gives_the_same_kept_set_and_details(tmp_path):
    rng = random.Random(3)
    words = [rng.choices(VOCAB, k=60) for _ in range(6)]
    rows = [make(i, " ".join(edited(words[i % 6], *range(i // 6 * 7 % 50, 60, 29)))) for i in range(30)]
    first, _ = run(NearDedup(), rows, tmp_path / "a")
    second, _ = run(NearDedup(), rows, tmp_path / "b")
    assert [ex.id for ex in first] == [ex.id for ex in second]
    assert rejected_rows(tmp_path / "a") == rejected_rows(tmp_path / "b")


def test_keep_longest_visits_longer_rows_first(tmp_path):
    words = random.Random(4).choices(VOCAB, k=60)
    rows = [make(0, " ".join(words)), make(1, " ".join(words + ["more", "words"])), make(2, " ".join(VOCAB[:60]))]
    kept, _ = run(NearDedup(NearDedup.Config(keep="longest")), rows, tmp_path)
    assert [ex.id for ex in kept] == ["s:1", "s:2"]
    assert DETAIL.fullmatch(rejected_rows(tmp_path)["s:0"]["detail"]).group(2) == "s:1"


def test_rows_differing_only_in_case_or_width_are_found_and_normalize_false_tells_them_apart(tmp_path):
    rows = [make(0, "Slide!", "Whee, down the slide we go."), make(1, "slide!", "whee, down the SLIDE we go"),
            make(2, "Ｓｌｉｄｅ！", "Whee, down the slide we go."), make(3, "Swing!", "Back and forth we go.")]
    kept, record = run(NearDedup(), rows, tmp_path)
    assert [ex.id for ex in kept] == ["s:0", "s:3"]
    assert [m["jaccard"] for m in record.findings["clusters"][0]["members"]] == [1.0, 1.0]

    kept_raw, _ = run(NearDedup(NearDedup.Config(normalize=False)), rows, tmp_path / "raw")
    assert [ex.id for ex in kept_raw] == ["s:0", "s:1", "s:2", "s:3"]


def test_role_words_do_not_make_two_different_short_chats_alike(tmp_path):
    """Character shingles of "user: Hi / assistant: Hello" and "user: Yo / assistant: Hey" share 38% through
    the role words alone; the stage compares contents only, which share nothing."""
    rows = [make(0, "Hi", "Hello"), make(1, "Yo", "Hey")]
    stage = NearDedup(NearDedup.Config(shingle="char", threshold=0.3))
    assert compared_text(rows[0], "conversation") == "Hi\nHello"
    assert jaccard(stage, "user: Hi\nassistant: Hello", "user: Yo\nassistant: Hey") >= 0.3  # what roles did
    kept, record = run(stage, rows, tmp_path)
    assert len(kept) == 2 and record.findings["clusters"] == []


def test_a_one_character_edit_in_a_long_chinese_sentence_is_found_with_auto_shingles(tmp_path):
    sentence = "今天天气很好，我们一起去公园散步吧。公园里有很多美丽的花，还有一个安静的湖，湖边有几棵高大的柳树，孩子们在草地上放风筝。"
    one_edit = sentence.replace("很多", "许多", 1)  # exactly one character differs
    assert sum(x != y for x, y in zip(sentence, one_edit)) == 1 and len(sentence) > 50
    rows = [make(0, sentence, "好的。"), make(1, one_edit, "好的。"), make(2, "请把这句话翻译成英文：我喜欢猫。", "I like cats.")]

    kept, record = run(NearDedup(), rows, tmp_path)
    assert [ex.id for ex in kept] == ["s:0", "s:2"]
    assert record.findings["params"]["char_shingled_rows"] == 3
    assert float(DETAIL.fullmatch(rejected_rows(tmp_path)["s:1"]["detail"]).group(1)) >= 0.8

    word_kept, _ = run(NearDedup(NearDedup.Config(shingle="word")), rows, tmp_path / "word")
    assert len(word_kept) == 3  # a whole clause is one "word": the edit hides the duplicate


QUESTION = "请问如何在家里用简单的材料制作一个小型的太阳能热水器，需要准备哪些工具，步骤大概是怎样的？"  # 45 chars


def test_the_default_character_3_grams_find_one_edit_in_a_short_chinese_or_japanese_question(tmp_path):
    """A one-character edit in a 45-character question (J 0.87), and ですか -> でしょうか in a 46-character one
    (0.84): both found with the default char_ngram (3); 5-grams put them at 0.78 and 0.76, below 0.8."""
    japanese = "すみません、駅前の大きな本屋で売っているこの日本語の教科書と練習問題集は全部でいくらですか？"
    rows = [make(0, QUESTION, "好的。"), make(1, QUESTION.replace("简单", "简易", 1), "好的。"),
            make(2, japanese, "はい。"), make(3, japanese.replace("ですか", "でしょうか"), "はい。")]
    assert NearDedup.Config().char_ngram == 3
    five = NearDedup(NearDedup.Config(char_ngram=5))
    texts = [compared_text(row, "conversation") for row in rows]
    assert jaccard(five, texts[0], texts[1]) < 0.8 and jaccard(five, texts[2], texts[3]) < 0.8

    kept, _ = run(NearDedup(), rows, tmp_path)

    assert [ex.id for ex in kept] == ["s:0", "s:2"]
    details = {row_id: DETAIL.fullmatch(row["detail"]).groups()[:2] for row_id, row in rejected_rows(tmp_path).items()}
    assert details["s:1"][1] == "s:0" and float(details["s:1"][0]) >= 0.8 and details["s:3"][1] == "s:2"


def test_different_short_chinese_questions_on_one_topic_or_template_are_not_duplicates(tmp_path):
    """Questions a person would call different (another city, another sentence to translate, another question
    about the same heater) stay well below 0.8 with character 3-grams (0.38, 0.70, 0.16), and all are kept."""
    rows = [make(0, "请问北京今天的天气怎么样？需要带伞吗？"), make(1, "请问上海今天的天气怎么样？需要穿外套吗？"),
            make(2, "请把下面这句话翻译成英文：我喜欢吃苹果。"), make(3, "请把下面这句话翻译成英文：我喜欢看电影。"),
            make(4, QUESTION), make(5, "太阳能热水器在冬天的效率怎么样？"), make(6, "什么是机器学习？"), make(7, "什么是深度学习？")]
    stage = NearDedup()
    texts = [compared_text(row, "conversation") for row in rows]
    assert max(jaccard(stage, texts[i], texts[i + 1]) for i in range(0, 8, 2)) < 0.75

    kept, record = run(stage, rows, tmp_path)

    assert len(kept) == 8 and record.findings["clusters"] == []


def test_tag_mode_groups_a_whole_chain_and_lists_each_members_strongest_link(tmp_path):
    words = random.Random(1).choices(VOCAB, k=60)
    rows = [make(0, " ".join(words)), make(1, " ".join(edited(words, 10))), make(2, " ".join(edited(words, 10, 40)))]
    kept, record = run(NearDedup(NearDedup.Config(action="tag")), rows, tmp_path)
    assert len(kept) == 3 and {ex.group for ex in kept} == {"near:s:0"}
    [cluster] = record.findings["clusters"]
    assert [(m["id"], m["linked_to"]) for m in cluster["members"]] == [("s:1", "s:0"), ("s:2", "s:1")]
    assert all(m["jaccard"] >= 0.8 for m in cluster["members"])
    assert record.findings["params"]["grouping"] == "linked groups (connected components)"


def test_auto_picks_character_shingles_only_for_unspaced_scripts():
    stage = NearDedup()
    texts = ["plain English text here", "日本語の文章です、スペースがありません", "Ein deutscher Satz, mit Umlauten: äöü",
             "ภาษาไทยไม่มีการเว้นวรรคระหว่างคำ", "Python 代码 print(x) for x in range(10) and more english words"]
    _, chars = stage.shingles(texts)
    assert chars.tolist() == [False, True, False, True, False]


# --- the hash family and agreement with datasketch -----------------------------------------------------------------


def test_the_hash_family_is_exactly_a_x_plus_b_mod_the_mersenne_prime():
    """No uint64 overflow: every value equals Python's big-integer (a*x + b) % (2^61 - 1), also for x near 2^32."""
    a, b = minhash.permutations(64, seed=5)
    assert ((a >= 1) & (a < minhash.MERSENNE) & (b < minhash.MERSENNE)).all() and int(a.max()) > 2**60
    x = np.concatenate([np.random.default_rng(0).integers(0, 2**32, 200, dtype=np.uint64),
                        np.array([0, 1, 2**32 - 1], dtype=np.uint64)])
    got = minhash.mersenne_hash(x[None, :], a[:, None], b[:, None])
    want = [[(int(ai) * int(xi) + int(bi)) % minhash.MERSENNE for xi in x] for ai, bi in zip(a, b)]
    assert got.tolist() == want


def test_a_signature_is_the_low_32_bits_of_each_permutations_minimum():
    rng = np.random.default_rng(1)
    hashes = rng.integers(0, 2**63, 40, dtype=np.uint64)
    row_of = np.repeat(np.arange(4), 10)
    sig = minhash.signatures(minhash.Shingles(hashes, row_of), 5, num_perm=32, seed=2)
    a, b = minhash.permutations(32, 2)
    x = [int(v) for v in minhash.shingle_keys(hashes)]
    for row in range(4):
        want = [min((int(ai) * xi + int(bi)) % minhash.MERSENNE for xi in x[row * 10 : row * 10 + 10]) & 0xFFFFFFFF
                for ai, bi in zip(a, b)]
        assert sig[row].tolist() == want
    assert (sig[4] == 0xFFFFFFFF).all()  # a row without shingles


def test_estimated_jaccard_agrees_with_datasketch_on_random_pairs_of_sets():
    datasketch = pytest.importorskip("datasketch")
    rng = random.Random(6)
    ours, theirs, truth = [], [], []
    for _ in range(200):
        common = [f"c{rng.random()}" for _ in range(rng.randint(5, 150))]
        left = set(common + [f"l{rng.random()}" for _ in range(rng.randint(0, 100))])
        right = set(common + [f"r{rng.random()}" for _ in range(rng.randint(0, 100))])
        truth.append(len(left & right) / len(left | right))
        items = sorted(left) + sorted(right)
        hashes = np.array([hash64(s) for s in items], dtype=np.uint64)
        sig = minhash.signatures(minhash.Shingles(hashes, np.repeat([0, 1], [len(left), len(right)])), 2, 128, seed=7)
        ours.append(float(minhash.estimated_jaccard(sig, np.array([[0, 1]]))[0]))
        sketches = []
        for side in (left, right):
            m = datasketch.MinHash(num_perm=128, seed=7)
            m.update_batch([s.encode() for s in side])
            sketches.append(m)
        theirs.append(sketches[0].jaccard(sketches[1]))
    ours, theirs, truth = map(np.array, (ours, theirs, truth))
    assert truth.min() < 0.2 and truth.max() > 0.9  # the pairs span the range
    assert np.abs(ours - theirs).mean() < 0.05  # both estimate with sd ~0.04 at 128 permutations
    assert np.abs(ours - truth).mean() < 0.04 and abs((ours - truth).mean()) < 0.01  # and ours is unbiased
    assert np.abs(theirs - truth).mean() < 0.04


def hash64(text: str) -> int:
    import xxhash

    return xxhash.xxh64_intdigest(text.encode())


# --- exact_dedup on preference rows ------------------------------------------------------------------------------


def preference_row(i: int, chosen: str, rejected: str) -> Example:
    return Example(id=f"p:{i}", source="p.jsonl", row=i, line=i + 1,
                   messages=(Message("user", "Write a haiku about rain."), Message("assistant", chosen)),
                   rejected=(Message("assistant", rejected),))


def test_exact_dedup_keys_preference_rows_on_prompt_chosen_and_rejected(tmp_path):
    rows = [preference_row(0, "Soft rain on the roof", "Rain."), preference_row(1, "Soft rain on the roof", "No."),
            preference_row(2, "Soft rain on the roof", "Rain.")]
    kept, record = run(ExactDedup(), rows, tmp_path)
    assert [ex.id for ex in kept] == ["p:0", "p:1"]  # same prompt and chosen, another rejected: another row
    assert record.findings["groups"] == [{"kept": "p:0", "dropped": ["p:2"]}]


def test_exact_dedup_keeps_role_words_in_its_key(tmp_path):
    """The same two contents with the roles swapped is another conversation."""
    swapped = Example(id="s:1", source="s.jsonl", row=1, line=2,
                      messages=(Message("user", "Sure."), Message("assistant", "Can you help?")))
    kept, _ = run(ExactDedup(), [make(0, "Can you help?", "Sure."), swapped], tmp_path)
    assert len(kept) == 2
