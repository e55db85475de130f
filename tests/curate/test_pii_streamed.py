"""The `pii` stage as a row stage: the streaming engine (small batches, forked workers) gives exactly what one pass
over the whole list gives, for every action, and the stage's accumulator stays small however many rows it sees.

Run: pytest tests/curate/test_pii_streamed.py -q
"""

import json
import pickle

import pytest
from pydantic import ValidationError

from tests.curate.engine_helpers import assert_same, run_whole, three_runs
from tests.curate.rows import chat_row
from tunesmith.curate import pii_findings
from tunesmith.curate.pii import Pii
from tunesmith.curate.record import Message
from tunesmith.curate.stage import StageContext

CODE = "Set it in the config:\n\n```ini\nmail = ops.lead@gmail.com\ntoken = ghp_" + "a1" * 18 + "\n```\n\nDone."


def rows():
    """Rows with personal values, look-alikes, allow-listed values, code and a preference row's rejected answer."""
    made = [
        chat_row(0, "mail me at ana.silva@gmail.com", "Noted, ana.silva@gmail.com."),
        chat_row(1, "What is 2 + 2?", "4."),
        chat_row(2, "call (415) 555-2671 tonight", "Will do."),
        chat_row(3, "card 4111 1111 1111 1111 for billing", "Charged."),
        chat_row(4, "loopback is 127.0.0.1 and docs use user@example.com", "Right."),
        chat_row(5, "q", CODE),
        chat_row(6, "my ssn is 123-45-6789", "Never share that."),
        chat_row(7, "office 10.20.3.4 in our net", "Internal."),
        chat_row(8, "请拨打 021 6234 5678 联系我们", "好的"),
        chat_row(9, "server 34.120.55.10 is down; mail bo.chen@outlook.com", "Restarting."),
        chat_row(10, "release 1.2.3.4 build notes", "Thanks."),
        chat_row(11, "q", "fine").replace(rejected=(Message("assistant", "mail zoe.b@gmail.com"),)),
        chat_row(12, "pay GB82WEST12345698765432 please", "Paid."),
        chat_row(13, "visa 4929 1827 3645 0194 exp 09/28", "call +1 303 499 7111 or +33 6 12 34 56 78"),
    ]
    return made


def runs(stage_config, tmp_path):
    """(survivors, record, rejected lines) of the whole-list run and of two streamed runs."""
    return three_runs(lambda: Pii(Pii.Config(**stage_config)), rows(), tmp_path)


@pytest.mark.parametrize("action", ["report", "mask", "drop"])
def test_streamed_pii_equals_whole_list_run(action, tmp_path):
    """Batches of 3 in one process and batches of 2 over two workers give the same rows, rejects and findings."""
    config = {"action": action, "allowlist": ["10.20.0.0/16"]}
    results = runs(config, tmp_path)
    assert_same(results)
    kept, record, rejected = results[0]
    f = record.findings
    # the findings really span several batches: PII rows, review items, a warning and a script-derived region
    assert f["rows_with_pii_ids"] == ["s:0", "s:6", "s:8", "s:9", "s:11", "s:12", "s:13"]  # s:11: a rejected answer
    assert f["rows_with_pii"] == 7 and f["counts"]["phone"] == {"user": 1, "assistant": 2}
    assert f["in_code"] == {"email": 1, "api_key": 1} and len(f["warnings"]) == 1
    assert f["allowlisted"]["ip_address"] == {"loopback": 1, "user allow-list": 1}
    assert f["allowlisted"]["credit_card"] and f["allowlisted"]["phone"]  # the 4111 test card, the 555 number
    assert f["phone_regions_from_script"] == {"CN": 1} and f["review_total"] == 7
    if action == "drop":
        assert [line["id"] for line in rejected] == f["rows_with_pii_ids"] and len(kept) == 7
    if action == "mask":
        assert f["mask_counts"] == {"email": 4, "ssn": 1, "phone": 3, "ip_address": 1, "iban": 1, "credit_card": 1}
        assert "ana.silva@gmail.com" not in json.dumps([e.to_json() for e in kept])
    if action == "report":
        assert [e.to_json() for e in kept] == [e.to_json() for e in rows()]


def test_streamed_pii_caps_keep_the_first_items_in_row_order(tmp_path, monkeypatch):
    """With the id, example and review caps smaller than a batch's share, merged batches keep the first items of
    the input, as one pass does (the forked workers inherit the lowered caps)."""
    monkeypatch.setattr(pii_findings, "MAX_IDS", 2)
    monkeypatch.setattr(pii_findings, "MAX_REVIEW", 2)  # one item per review kind
    results = runs({"action": "mask", "max_examples": 3}, tmp_path)
    assert_same(results)
    f = results[0][1].findings
    assert f["rows_with_pii_ids"] == ["s:0", "s:6"] and f["rows_with_pii"] == 7
    assert [e["id"] for e in f["examples"]] == ["s:0", "s:0", "s:6"]
    assert [(r["kind"], r["id"]) for r in f["review"]] == [("pii_in_code", "s:5"), ("pii_allowlisted", "s:2")]
    assert f["review_total"] == 7


def test_pii_tally_stays_small_however_many_rows(tmp_path):
    """The accumulator holds counters and the first few items only: 20x the rows, the same pickled size."""
    stage = Pii(Pii.Config(action="mask"))
    ctx = StageContext("pii", None)
    stage.setup(ctx)

    def tally_after(n):
        tally = stage.open(ctx)
        for i in range(n):
            stage.keep(chat_row(i, f"mail me at user{i}@gmail.com or 127.0.0.{i % 200 + 1}"), tally, ctx)
        return tally

    small, big = tally_after(50), tally_after(1000)
    assert big.rows == 1000 and big.review_total == 1000
    assert abs(len(pickle.dumps(big)) - len(pickle.dumps(small))) < 64  # a few digits of the counters differ


def test_pii_findings_model_refuses_a_renamed_key(tmp_path):
    """The typed findings catch a finding a gate would otherwise read as missing."""
    _, record, _ = run_whole(Pii(Pii.Config()), rows(), tmp_path)
    findings = {k: v for k, v in record.findings.items() if k not in ("rejected_by_reason", "rejected_samples")}
    Pii.Findings.model_validate(findings)
    findings["rows_with_PII"] = findings.pop("rows_with_pii")
    with pytest.raises(ValidationError):
        Pii.Findings.model_validate(findings)
