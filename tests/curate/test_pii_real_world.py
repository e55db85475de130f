"""`pii` on real-world shapes (issue 11 item 2): code, documentation values, versions, ids and number tables.

Each case pairs the false positive that must go with the true positive that must stay.
Run: pytest tests/curate/test_pii_real_world.py -q
"""

import json

import pytest
from pydantic import ValidationError

from tests.curate.rows import chat_row
from tunesmith.curate.pii import Pii
from tunesmith.curate.pii_allow import USER, AllowList
from tunesmith.curate.pii_code import code_regions
from tunesmith.curate.pii_detectors import Scanner, find_pii
from tunesmith.curate.record import Message
from tunesmith.curate.stage import StageContext

make = chat_row
SCANNER = Scanner()


def run(examples, tmp_path, **config):
    kept, record = Pii(Pii.Config(**config)).run(examples, StageContext("pii", tmp_path / "rejected"))
    return kept, record.findings


def kinds(text, scanner=SCANNER):
    """(type, value, allow reason, in code) of every hit."""
    return [(h.type, h.value, h.allowed, h.in_code) for h in scanner.scan(text)]


# --- code regions ---------------------------------------------------------------------------------------------

CODE_ANSWER = (
    "Use a regex:\n\n"
    "```python\n"
    "EMAIL = re.compile(r'[\\w.]+@[\\w]+\\.com')\n"
    "assert EMAIL.match('bob.smith@gmail.com')\n"
    "url = 'jdbc:mysql://84.23.11.9:3306/shop'\n"
    "```\n\n"
    "or with tildes:\n\n"
    "~~~\nphone = '+1 415 253 2671'\n~~~\n\n"
    "or indented:\n\n"
    "    card = '4539 1488 0343 6467'\n"
    "    mail = 'ann.lee@yahoo.com'\n\n"
    "and inline `send('carol.w@outlook.com')` too."
)


def test_code_regions_cover_fenced_tilde_indented_and_inline_code():
    """Each kind of Markdown code is a region; the prose between them is not."""
    regions = [CODE_ANSWER[a:b] for a, b in code_regions(CODE_ANSWER)]
    assert [r.splitlines()[0] for r in regions] == ["```python", "~~~", "    card = '4539 1488 0343 6467'",
                                                    "`send('carol.w@outlook.com')`"]
    assert all("Use a regex" not in r and "or with tildes" not in r for r in regions)


def test_indented_line_without_blank_line_before_is_prose():
    """An indented line that continues a paragraph is not code (Markdown), so its email is still found."""
    text = "Contact:\n    dana.k@gmail.com"
    assert code_regions(text) == []
    assert kinds(text) == [("email", "dana.k@gmail.com", None, False)]


def test_unclosed_fence_runs_to_the_end():
    """An unclosed fence is code to the end of the text, as CommonMark reads it."""
    assert kinds("see\n```\nx = 'eve@gmail.com'") == [("email", "eve@gmail.com", None, True)]


def test_masking_leaves_code_byte_identical_and_reports_it(tmp_path):
    """With scan_code off, mask changes nothing in code, and every value found there is counted and reviewed."""
    row = make(0, "How do I match emails?", CODE_ANSWER)
    kept, f = run([row], tmp_path, action="mask")
    assert kept[0].messages[1].content == CODE_ANSWER
    assert f["rows_with_pii"] == 0 and f["counts"] == {}
    assert f["in_code"] == {"email": 3, "phone": 1, "credit_card": 1, "ip_address": 1}
    assert f["in_code_rows"] == 1
    items = [r for r in f["review"] if r["kind"] == "pii_in_code"]
    assert len(items) == 6 and {r["field"] for r in items} == {"messages[1].content"}
    assert all(r["where"] == "s.jsonl:1" and len(r["text"]) <= 300 for r in items)
    assert "bob.smith@gmail.com" not in json.dumps(f)  # review text shows the masked preview only


def test_scan_code_masks_inside_code_too(tmp_path):
    """scan_code: true detects and masks in code like anywhere else."""
    kept, f = run([make(0, "q", CODE_ANSWER)], tmp_path, action="mask", scan_code=True)
    masked = kept[0].messages[1].content
    assert "bob.smith@gmail.com" not in masked and "'[EMAIL]'" in masked and "'[PHONE]'" in masked
    assert "[CREDIT_CARD]" in masked and "jdbc:mysql://[IP_ADDRESS]:3306" in masked
    assert f["rows_with_pii"] == 1 and f["in_code"] == {}


def test_api_key_in_code_is_a_warning(tmp_path):
    """A secret inside code is left unmasked by default, so the stage says so in a warning."""
    text = "```\nopenai.api_key = 'sk-proj-abc123def456ghi789jkl012'\n```"
    kept, f = run([make(0, "q", text)], tmp_path, action="mask")
    assert kept[0].messages[1].content == text
    assert len(f["warnings"]) == 1 and "API key(s)" in f["warnings"][0] and "scan_code" in f["warnings"][0]


# --- allow-list -----------------------------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("jdbc:mysql://127.0.0.1:3306/shop", "loopback"),
        ("listen on 0:0:0:0:0:0:0:1 port 80", "loopback"),
        ("router at 192.168.1.1 and", "private"),
        ("host 10.0.0.12", "private"),
        ("host 172.20.3.4", "private"),
        ("link-local 169.254.10.20", "link-local"),
        ("bind 0.0.0.0:8080", "unspecified"),
        ("doc 192.0.2.15", "documentation"),
        ("doc 198.51.100.7", "documentation"),
        ("doc 203.0.113.9", "documentation"),
        ("doc 2001:db8:85a3::8a2e:370:7334", "documentation"),
        ("mail user@example.com", "documentation domain"),
        ("mail ops@mail.example.org", "documentation domain"),
        ("mail a@example.net", "documentation domain"),
        ("mail a@shop.test", "reserved top-level"),
        ("mail a@nowhere.invalid", "reserved top-level"),
        ("mail root@db.localhost", "reserved top-level"),
        ("call 415-555-0123", "555-0100 to 555-0199"),
        ("UK 07700 900123", "Ofcom drama range (mobile"),
        ("ring +44 20 7946 0958", "Ofcom drama range (London"),
        ("card 4111 1111 1111 1111", "test card"),
        ("aws AKIAIOSFODNN7EXAMPLE", "AWS documentation"),
    ],
)
def test_reserved_values_are_found_and_allowlisted(text, why):
    """Reserved/documentation values are found (never silently ignored) and marked allow-listed, with the reason."""
    hits = SCANNER.scan(text)
    assert len(hits) == 1 and hits[0].allowed is not None and why in hits[0].allowed
    assert find_pii(text) == []


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        ("connect to 84.23.11.9 first", "ip_address"),
        ("server 2a00:1450:4009:80b::200e answers", "ip_address"),
        ("write to maria.gomez@gmail.com today", "email"),
        ("call 415-253-2671", "phone"),
        ("UK 07911 123456", "phone"),
        ("card 4539 1488 0343 6467", "credit_card"),
    ],
)
def test_real_looking_values_next_to_reserved_ones_are_pii(text, kind):
    """The same shapes outside the reserved ranges stay personal data."""
    assert [k for _, _, k, _ in find_pii(text)] == [kind]


def test_allow_reserved_off_masks_documentation_values(tmp_path):
    """allow_reserved: false treats documentation values as PII (e.g. demo data planted with them)."""
    kept, f = run([make(0, "ping 127.0.0.1 or user@example.com, UK 07700 900123")], tmp_path,
                  action="mask", allow_reserved=False)
    assert kept[0].messages[0].content == "ping [IP_ADDRESS] or [EMAIL], UK [PHONE]"
    assert f["allowlisted"] == {}


def test_user_allowlist_entries(tmp_path):
    """A CIDR network, an @domain and an exact phone value from config are allow-listed, shown masked."""
    row = make(0, "vpn 8.8.4.4, mail it@acme-corp.com, helpdesk +1 (415) 253-2671, but bob@gmail.com")
    config = {"allowlist": ["8.8.0.0/16", "@acme-corp.com", "1-415-253-2671"], "action": "mask"}
    kept, f = run([row], tmp_path, **config)
    assert kept[0].messages[0].content == "vpn 8.8.4.4, mail it@acme-corp.com, helpdesk +1 (415) 253-2671, but [EMAIL]"
    assert f["allowlisted"] == {"email": {USER: 1}, "phone": {USER: 1}, "ip_address": {USER: 1}}
    assert "it@acme-corp.com" not in json.dumps(f["review"])  # a user's own entries may be real: shown masked


def test_allowlisted_values_become_review_items(tmp_path):
    """Built-in allow-listed values are reported as review items with the reason and the sentence."""
    _, f = run([make(0, "Set url = jdbc:mysql://127.0.0.1:3306/shop in the config.")], tmp_path)
    assert f["rows_with_pii"] == 0 and f["allowlisted"] == {"ip_address": {"loopback": 1}}
    (item,) = f["review"]
    assert item["kind"] == "pii_allowlisted" and "127.0.0.1" in item["text"] and "loopback" in item["detail"]
    assert f["review_total"] == 1


# --- IPs, phones, cards ---------------------------------------------------------------------------------------

@pytest.mark.parametrize(
    "text",
    ["version 1.2.3.4", "Version: 8.8.4.4", "release 10.20.30.40", "v 2.3.4.5", "v2.3.4.5", "requests==2.31.0.1",
     "OID 2.5.4.3", "see section 4.2.1.3", "sequence 1.2.3.4.5", "tag 1.2.3.4.5.6"],
)
def test_versions_and_dotted_sequences_are_not_ips(text):
    """Dotted numbers after version/release/section words, or in longer dotted runs, are not addresses."""
    assert SCANNER.scan(text) == []


@pytest.mark.parametrize("text", ["id 0123 4567 8901", "order 4155 253 2671", "ticket #415-253-2671",
                                  "1 2 3 4 5 6 7 8 9 10", "logged at 2023-01-15 10:30:00"])
def test_ids_counts_and_dates_are_not_phones(text):
    """phonenumbers plus id context: ids, counting sequences and timestamps are not phone numbers."""
    assert [h for h in SCANNER.scan(text) if h.type == "phone"] == []


def test_phone_regions_are_configurable(tmp_path):
    """A national number is tried in each configured region; an unknown region is a config error."""
    text = "ring 030 1234 5678"  # a UK 03 number, in national format
    assert kinds(text, Scanner(regions=("US",))) == []
    assert [k for k, *_ in kinds(text, Scanner(regions=("US", "GB")))] == ["phone"]
    with pytest.raises(ValidationError, match="unknown phone regions"):
        Pii.Config(regions=["XX"])


@pytest.mark.parametrize(
    "text",
    ["# 3 6 9 12 15 18 21 24 27", "# 4 8 12 16 20 24 28 32", "# 6 12 18 24 30 36 42 48 54 60"],
)
def test_multiplication_rows_that_pass_luhn_are_not_cards(text):
    """Rows of a times table whose digits pass Luhn (the old detector masked them) are not card numbers."""
    assert SCANNER.scan(text) == []


def test_card_needs_grouping_or_a_card_word_and_no_longer_run():
    """A bare Luhn-valid run is a card only next to a card word; digits inside a longer run are never a card."""
    assert SCANNER.scan("tracking 4539148803436467 shipped") == []
    assert [h.type for h in SCANNER.scan("my visa is 4539148803436467")] == ["credit_card"]
    assert [h.type for h in SCANNER.scan("4539 1488 0343 6467 exp 12/28")] == ["credit_card"]
    assert SCANNER.scan("hash 94539148803436467123 and 4539 1488 0343 6467 0001") == []


def test_masking_keeps_card_expiry(tmp_path):
    """Only the card number itself is masked."""
    kept, _ = run([make(0, "charge card 4539-1488-0343-6467 12/28")], tmp_path, action="mask")
    assert kept[0].messages[0].content == "charge card [CREDIT_CARD] 12/28"


# --- whole rows -----------------------------------------------------------------------------------------------

SO_ANSWER = (
    "You need to point the driver at the database host. In `application.properties`:\n\n"
    "```properties\n"
    "spring.datasource.url=jdbc:mysql://127.0.0.1:3306/shop\n"
    "spring.mail.username=test.user@gmail.com\n"
    "```\n\n"
    "In production ours connects to 34.120.55.10 instead. If it still fails, mail me at "
    "priya.raman@outlook.com and I will look (not user@example.com, that is the placeholder)."
)


def test_stack_overflow_like_answer(tmp_path):
    """Code stays byte-identical, the public IP and real email in prose are masked, the placeholder is allowed."""
    row = make(0, "Spring Boot cannot connect to MySQL, what is wrong?", SO_ANSWER)
    kept, f = run([row], tmp_path, action="mask")
    out = kept[0].messages[1].content
    code = SO_ANSWER[SO_ANSWER.index("```"): SO_ANSWER.rindex("```") + 3]
    assert code in out
    assert "connects to [IP_ADDRESS] instead" in out and "mail me at [EMAIL] and" in out
    assert "user@example.com" in out
    assert f["counts"] == {"email": {"assistant": 1}, "ip_address": {"assistant": 1}}
    assert f["in_code"] == {"email": 1}
    assert f["allowlisted"] == {"email": {"documentation domain (RFC 2606)": 1}, "ip_address": {"loopback": 1}}


def test_preference_rows_scan_and_mask_the_rejected_answer(tmp_path):
    """The rejected answer of a preference row is read and masked like the messages."""
    row = make(0, "q", "fine").replace(rejected=(Message("assistant", "mail zoe.b@gmail.com"),))
    kept, f = run([row], tmp_path, action="mask")
    assert kept[0].rejected == (Message("assistant", "mail [EMAIL]"),)
    assert f["examples"][0]["field"] == "rejected[0].content"


def test_user_allowlist_values_compare_by_digits():
    """An exact phone entry matches however the number is spaced."""
    allow = AllowList(entries=("+1 800 253 0199",))
    assert allow.reason("phone", "(800) 253-0199", "+18002530199") == USER
    assert allow.reason("phone", "(800) 253-0198", "+18002530198") is None


def test_audit_report_pii_section_lists_values_found_but_not_masked(tmp_path):
    """The report's PII view lists in-code and allow-listed counts with their reasons, beside the PII table."""
    from tunesmith.reports.audit import _pii

    stage = Pii(Pii.Config(action="mask"))
    _, record = stage.run([make(0, "q", SO_ANSWER)], StageContext("pii", tmp_path / "rejected"))
    view = _pii(record)
    assert view["rows_with_pii"] == 1 and view["in_code_rows"] == 1
    assert view["skipped"] == [("email", "inside code", 1), ("email", "documentation domain (RFC 2606)", 1),
                               ("ip_address", "loopback", 1)]
