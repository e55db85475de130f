"""Tests for the `pii` stage: each detector, its look-alikes, and the report/mask/drop actions.

Detector tests use a scanner with the built-in allow-list off, so documentation values (example.com, 555 and
Ofcom drama numbers, test cards) prove detection; tests/curate/test_pii_real_world.py covers the allow-list.
Run: pytest tests/curate/test_pii.py -q
"""

import json

import pytest
from pydantic import ValidationError

from tests.curate.rows import chat_row
from tunesmith.curate.pii import Pii, find_pii, preview
from tunesmith.curate.pii_allow import AllowList
from tunesmith.curate.pii_detectors import Scanner
from tunesmith.curate.record import Message
from tunesmith.curate.stage import StageContext

make = chat_row
RAW = Scanner(allow=AllowList(builtin=False))  # no built-in allow-list: every documentation value counts


def run(examples, tmp_path, **config):
    stage = Pii(Pii.Config(**config))
    kept, record = stage.run(examples, StageContext("pii", tmp_path / "rejected"))
    assert record.rows_in == record.rows_out + record.rows_rejected
    return kept, record


@pytest.mark.parametrize(
    ("text", "kind", "value"),
    [
        ("write to john.doe@example.com today", "email", "john.doe@example.com"),
        ("call +1 415 555 2671 now", "phone", "+1 415 555 2671"),
        ("call (415) 555-2671 now", "phone", "(415) 555-2671"),
        ("ring +44 20 7946 0958", "phone", "+44 20 7946 0958"),
        ("ring 030 1234 5678", "phone", "030 1234 5678"),
        ("card 4111 1111 1111 1111 expires", "credit_card", "4111 1111 1111 1111"),
        ("card 5500-0000-0000-0004", "credit_card", "5500-0000-0000-0004"),
        ("server 192.168.1.1.", "ip_address", "192.168.1.1"),
        ("host 2001:db8:85a3::8a2e:370:7334 up", "ip_address", "2001:db8:85a3::8a2e:370:7334"),
        ("pay GB82WEST12345698765432 please", "iban", "GB82WEST12345698765432"),
        ("pay GB82 WEST 1234 5698 7654 32 please", "iban", "GB82 WEST 1234 5698 7654 32"),
        ("ssn 123-45-6789", "ssn", "123-45-6789"),
        ("aws AKIAIOSFODNN7EXAMPLE", "api_key", "AKIAIOSFODNN7EXAMPLE"),
        ("gh ghp_" + "a1" * 18, "api_key", "ghp_" + "a1" * 18),
        ("openai sk-proj-abc123def456ghi789jkl012", "api_key", "sk-proj-abc123def456ghi789jkl012"),
        ("slack xoxb-1234567890-abcdefghij", "api_key", "xoxb-1234567890-abcdefghij"),
        ("google AIzaSyA1234567890abcdefghijklmnopqrstuv", "api_key", "AIzaSyA1234567890abcdefghijklmnopqrstuv"),
        ("Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.payload", "api_key", "eyJhbGciOiJIUzI1NiJ9.payload"),
    ],
)
def test_detects(text, kind, value):
    """Each detector finds its value (documentation values, allow-list off) and nothing else."""
    assert [(k, v) for _, _, k, v in find_pii(text, RAW)] == [(kind, value)]


@pytest.mark.parametrize(
    "text",
    [
        "card 4111 1111 1111 1112",  # fails Luhn
        "pay GB83WEST12345698765432",  # bad IBAN checksum
        "version 1.2.3 released",
        "octet 999.1.1.1 is out of range",
        "In 2023 we sold 3 items for 1,234,567.89 dollars",
        "logged at 2023-01-15 10:30:00",
        "sort 34 12 98 45 67 89",
        "ssn-like 666-12-3456 and 000-12-3456 and 900-12-3456",
        "slice x[::2] and std::vector and 10:30:00",
        "scikit-learn and sk-some-long-hyphenated-name",
    ],
)
def test_ignores_lookalikes(text):
    """Versions, dates, sorted numbers, bad checksums and code syntax are not PII, even with the allow-list off."""
    assert find_pii(text, RAW) == []


def test_preview_never_shows_the_value():
    assert preview("email", "john@example.com") == "j***@e******.com"
    assert preview("credit_card", "4111 1111 1111 1111") == "****-****-****-1111"
    assert preview("ssn", "123-45-6789") == "***-**-6789"
    assert preview("ip_address", "192.168.1.1") == "192.*.*.*"
    assert preview("api_key", "AKIAIOSFODNN7EXAMPLE") == "AKIA********"


def test_mask_replaces_values(tmp_path):
    rows = [
        make(0, "Mail me at a.b@gmail.com or call 415-253-2671.", "Card 4539148803436467 noted, ssn 123-45-6789."),
        make(1, "No personal data here, 3 items in 2023."),
    ]
    kept, record = run(rows, tmp_path, action="mask")
    assert kept[0].messages[0] == Message("user", "Mail me at [EMAIL] or call [PHONE].")
    assert kept[0].messages[1] == Message("assistant", "Card [CREDIT_CARD] noted, ssn [SSN].")
    assert kept[1] is rows[1]
    assert record.findings["mask_counts"] == {"email": 1, "phone": 1, "credit_card": 1, "ssn": 1}
    assert record.findings["counts"]["email"] == {"user": 1}
    assert record.findings["counts"]["ssn"] == {"assistant": 1}


def test_drop_writes_rejected_rows(tmp_path):
    rows = [make(0, "hello"), make(1, "hi", "reach me at x@y.io"), make(2, "server 84.23.11.9 and +49 30 1234567")]
    kept, record = run(rows, tmp_path, action="drop")
    assert [e.id for e in kept] == ["s:0"]
    assert (record.rows_in, record.rows_out, record.rows_rejected) == (3, 1, 2)
    lines = [json.loads(line) for line in (tmp_path / "rejected" / "pii.jsonl").read_text().splitlines()]
    assert [(r["id"], r["reason"]) for r in lines] == [("s:1", "pii"), ("s:2", "pii")]
    assert lines[0]["detail"] == "email in messages[1].content"
    assert lines[1]["detail"] == "ip_address in messages[0].content, phone in messages[0].content"


def test_report_findings_keep_rows(tmp_path):
    rows = [make(0, "john@gmail.com", "jane@gmail.com"), make(1, "nothing"), make(2, "card 4539 1488 0343 6467")]
    kept, record = run(rows, tmp_path)
    assert kept == rows
    f = record.findings
    assert f["action"] == "report"
    assert f["counts"] == {"email": {"user": 1, "assistant": 1}, "credit_card": {"user": 1}}
    assert f["rows_with_pii"] == 2
    assert f["rows_with_pii_ids"] == ["s:0", "s:2"]
    assert f["examples"][0] == {
        "id": "s:0",
        "type": "email",
        "role": "user",
        "field": "messages[0].content",
        "masked": "j***@g****.com",
    }
    assert "mask_counts" not in f
    assert all("4539 1488 0343 6467" not in json.dumps(e) for e in f["examples"])


def test_types_limits_detectors(tmp_path):
    kept, record = run([make(0, "john@gmail.com 415-253-2671")], tmp_path, action="mask", types=["phone"])
    assert kept[0].messages[0].content == "john@gmail.com [PHONE]"
    with pytest.raises(ValidationError):
        Pii.Config(types=["passport"])
