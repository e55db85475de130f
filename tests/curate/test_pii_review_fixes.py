"""`pii` after the hostile review of issue 11 item 2: each reported miss or false alarm, beside its true case.

Covers: contact data in indented blocks and backticks (prose unless it looks like code), card numbers that need
a card word, public DNS resolvers, product versions, thousands separators, SSNs that need an SSN word,
placeholder domains, and the phone regions recorded on the findings.
Run: pytest tests/curate/test_pii_review_fixes.py -q
"""

import random

import pytest

from tests.curate.rows import chat_row
from tunesmith.curate.pii import Pii
from tunesmith.curate.pii_allow import AllowList
from tunesmith.curate.pii_detectors import Scanner, find_pii
from tunesmith.curate.stage import StageContext

make = chat_row
SCANNER = Scanner()
RAW = Scanner(allow=AllowList(builtin=False))  # published test card numbers count as cards


def run(examples, tmp_path, **config):
    kept, record = Pii(Pii.Config(**config)).run(examples, StageContext("pii", tmp_path / "rejected"))
    return kept, record.findings


def found(text, scanner=SCANNER):
    """(type, value) of every personal hit: not allow-listed, not in code."""
    return [(k, v) for _, _, k, v in find_pii(text, scanner)]


# --- 1. indented and backticked contact data is prose -------------------------------------------------------

@pytest.mark.parametrize(
    ("text", "masked"),
    [
        ("Sure, here is what I have on file:\n\n    Jane Doe\n    jane.doe@acmeltd.co.uk\n    +44 7911 123456",
         "Sure, here is what I have on file:\n\n    Jane Doe\n    [EMAIL]\n    [PHONE]"),
        ("Customer details:\n\n\tName: Ahmed Khan\n\tPhone: +1 415 867 5309\n\tEmail: ahmed.k@outlook.com",
         "Customer details:\n\n\tName: Ahmed Khan\n\tPhone: [PHONE]\n\tEmail: [EMAIL]"),
        ("My email is `bob.jones77@gmail.com`, please update it", "My email is `[EMAIL]`, please update it"),
        ("Steps:\n1. Open settings\n2. Click profile\n\n    Then mail li.wei@gmail.com or call 415-253-2671.",
         "Steps:\n1. Open settings\n2. Click profile\n\n    Then mail [EMAIL] or call [PHONE]."),
    ],
)
def test_contact_data_in_indented_blocks_and_backticks_is_masked(tmp_path, text, masked):
    """Indentation or backticks around nothing but contact data do not make it code: it is found and masked."""
    kept, f = run([make(0, "what do you have on me?", text)], tmp_path, action="mask")
    assert kept[0].messages[1].content == masked
    assert f["rows_with_pii"] == 1 and f["in_code"] == {}


@pytest.mark.parametrize(
    "block",
    [
        "    mail = 'ann.lee@yahoo.com'",
        "    $ curl -u ann.lee@yahoo.com https://api.shop.io",
        "    >>> send('ann.lee@yahoo.com')",
        "    SELECT id FROM users\n    WHERE email LIKE 'ann.lee@yahoo.com'",
        "    EMAIL = re.compile(r'[\\w.]+@[\\w]+\\.com')\n    assert EMAIL.match('ann.lee@yahoo.com')",
        "    <to>ann.lee@yahoo.com</to>",
        "    ssh ann.lee@yahoo.com",
    ],
)
def test_indented_blocks_that_look_like_code_stay_code(block):
    """An indented block with code punctuation, a prompt, a keyword or a tag is code: its values are not PII."""
    hits = SCANNER.scan("Run this:\n\n" + block)
    assert [(h.value, h.in_code) for h in hits] == [("ann.lee@yahoo.com", True)]


def test_fenced_blocks_and_inline_code_with_more_than_the_value_stay_code():
    """A fence is code even around one email; an inline span holding a call, not just the value, is code."""
    assert found("Reply to:\n```\nann.lee@yahoo.com\n```") == []
    assert found("Call `send('ann.lee@yahoo.com')` here") == []
    assert found("Write `ann.lee@yahoo.com` here") == [("email", "ann.lee@yahoo.com")]


# --- 2. card numbers need a card word -----------------------------------------------------------------------

@pytest.mark.parametrize(
    "text",
    [
        "Sales grew in 2002 2003 2004 2005 as shown",
        "Values 5424 0000 0000 0015 from the experiment",
        "the lottery numbers 4532 0151 1283 0366 were drawn",
        "rows 4539 1488 0343 6467 and 4539148803436467",
    ],
)
def test_luhn_valid_digit_groups_without_a_card_word_are_not_cards(text):
    """Years, measurements and draws that pass Luhn, grouped or bare, are nothing without a card word nearby."""
    assert SCANNER.scan(text) == []


def test_random_number_tables_are_never_flagged():
    """1000 rows of four 2000-6999 numbers (about 1 in 10 passes Luhn): no card, phone or anything else."""
    rng = random.Random(11)
    rows = ["Results: " + " ".join(str(rng.randint(2000, 6999)) for _ in range(4)) for _ in range(1000)]
    flagged = [row for row in rows if SCANNER.scan(row)]
    assert flagged == []


@pytest.mark.parametrize(
    "text",
    [
        "my visa is 4539 1488 0343 6467",
        "Card number: 4539-1488-0343-6467",
        "charged 4539148803436467 yesterday",
        "pay with 5425 2334 3010 9903 please",
        "amex 3714 496353 98431 on file",
        "4539 1488 0343 6467 exp 12/28",
        "billing: 6011 0009 9013 9424",
    ],
)
def test_card_numbers_next_to_a_card_word_are_found(text):
    """With a card word within 40 characters, grouped and bare Luhn-valid numbers are cards (test cards count here)."""
    assert [k for k, _ in found(text, RAW)] == ["credit_card"]


# --- 3. other false alarms ------------------------------------------------------------------------------------

@pytest.mark.parametrize("ip", ["8.8.8.8", "8.8.4.4", "1.1.1.1", "1.0.0.1", "9.9.9.9", "208.67.222.222",
                                "2606:4700:4700::1111", "2001:4860:4860::8888"])
def test_public_dns_resolvers_are_allowlisted(ip):
    """Well-known public resolvers are infrastructure, not personal data: found, allow-listed with the reason."""
    (hit,) = SCANNER.scan(f"Set your DNS server to {ip} in the router")
    assert hit.type == "ip_address" and "public DNS resolver" in hit.allowed


def test_dns_sentence_from_the_review_is_left_alone(tmp_path):
    """The reviewed sentence is unchanged by mask, and both resolvers are reported as allow-listed."""
    text = "Set your DNS server to 8.8.8.8 or 1.1.1.1"
    kept, f = run([make(0, text)], tmp_path, action="mask")
    assert kept[0].messages[0].content == text and f["rows_with_pii"] == 0
    assert sum(f["allowlisted"]["ip_address"].values()) == 2


@pytest.mark.parametrize("text", ["Python 3.11.4.0 build", "I run Python 3.11.4.0 here", "on Node 18.17.1.0 now",
                                  "3.11.4.0 release notes"])
def test_product_versions_are_not_ips(text):
    """A small-numbered quad after a product name (not first in its sentence) or before build/release is a version."""
    assert SCANNER.scan(text) == []


@pytest.mark.parametrize("text", ["the server at 84.23.11.9", "Server 84.23.11.9 is down", "user Mallory 84.23.11.9",
                                  "Blocked 3.11.4.9 today", "the IPv4 3.11.4.9"])
def test_addresses_after_words_and_names_are_still_ips(text):
    """Addresses after prepositions, network words, names (large octets) and at sentence start are still found."""
    assert [k for k, _ in found(text)] == ["ip_address"]


@pytest.mark.parametrize("text", ["Population: 1 234 567 890 people", "a crowd of 12 345 678 fans",
                                  "budget 234 567 890 euros"])
def test_thousands_separators_are_not_phones(text):
    """Groups of three digits after a first group of 1-3 (no leading 0 or +) are a count, not a phone number."""
    assert SCANNER.scan(text) == []


@pytest.mark.parametrize("text", ["call 415 253 2671", "ring +44 7911 123456", "call 0161 496 0000 x",
                                  "ring 07911 123 456"])
def test_phones_with_spaces_are_still_phones(text):
    """NANP 3-3-4, international and trunk-0 national numbers written with spaces stay phones."""
    assert [h.type for h in SCANNER.scan(text)] == ["phone"]


@pytest.mark.parametrize("text", ["Part number 123-45-6789 fits", "call 123-45-6789 ref", "lot 123-45-6789"])
def test_ssn_shape_without_an_ssn_word_is_not_an_ssn(text):
    """The 3-2-4 shape alone is a part number or an id."""
    assert [h for h in SCANNER.scan(text) if h.type == "ssn"] == []


@pytest.mark.parametrize("text", ["SSN: 123-45-6789", "social security number 123-45-6789", "SSN# 123-45-6789",
                                  "his tax id is 123-45-6789", "123-45-6789 (ssn)"])
def test_ssn_next_to_an_ssn_word_is_found(text):
    assert found(text) == [("ssn", "123-45-6789")]


@pytest.mark.parametrize("email", ["user@domain.com", "admin@yourdomain.com", "me@mydomain.com",
                                   "john@yourcompany.com", "hr@company.com", "info@mail.yoursite.com"])
def test_placeholder_domains_are_allowlisted(email):
    """How-to text uses stand-in domains; they are allow-listed as documentation placeholders, not masked."""
    (hit,) = SCANNER.scan(f"to match {email} in a regex explanation")
    assert hit.type == "email" and "documentation placeholder" in hit.allowed


def test_real_domains_next_to_placeholders_are_pii():
    assert found("mail user@domain.com or jane.doe@acmeltd.co.uk") == [("email", "jane.doe@acmeltd.co.uk")]


# --- 4. phone regions are written down -----------------------------------------------------------------------

def test_findings_record_the_phone_regions_and_what_is_not_covered(tmp_path):
    """National numbers of other regions are missed by default, and the findings say which regions were searched."""
    rows = [make(0, "Appelez-moi au 06 12 34 56 78"), make(1, "Ring me: 0412 345 678")]
    _, f = run(rows, tmp_path)
    assert f["rows_with_pii"] == 0
    assert f["phone_regions"] == ["US", "GB"] and f["phone_regions_from_script"] == {}
    coverage = f["phone_coverage"]
    assert "US, GB" in coverage and "+country code are found for every country" in coverage
    assert "add their regions" in coverage


def test_added_regions_find_national_numbers(tmp_path):
    """With FR and AU configured, the same rows hold phones."""
    rows = [make(0, "Appelez-moi au 06 12 34 56 78"), make(1, "Ring me: 0412 345 678")]
    kept, f = run(rows, tmp_path, action="mask", regions=["US", "GB", "FR", "AU"])
    assert [k.messages[0].content for k in kept] == ["Appelez-moi au [PHONE]", "Ring me: [PHONE]"]
    assert f["phone_regions"] == ["US", "GB", "FR", "AU"] and "FR, AU" in f["phone_coverage"]


def test_chinese_script_adds_the_cn_region(tmp_path):
    """A Chinese text's mobile number is tried as CN and the findings count the rows; the switch turns it off."""
    rows = [make(0, "我的手机号码是 13812345678"), make(1, "hello")]
    kept, f = run(rows, tmp_path, action="mask")
    assert kept[0].messages[0].content == "我的手机号码是 [PHONE]"
    assert f["phone_regions_from_script"] == {"CN": 1} and "CN numbers in 1 row(s)" in f["phone_coverage"]
    _, off = run(rows, tmp_path / "off", regions_from_script=False)
    assert off["rows_with_pii"] == 0 and off["phone_regions_from_script"] == {}


# --- found by auditing public-format datasets ---------------------------------------------------------------


def test_an_email_right_after_chinese_text_is_found():
    """CJK characters count as word characters for \\w, so an address glued to them was missed."""
    assert found("联系方式：手机13957162248，邮箱chenjing_dev@163.com，谢谢")[-1:] == [("email", "chenjing_dev@163.com")]
    assert ("email", "li@qq.com") in found("请发到li@qq.com确认")


@pytest.mark.parametrize("text", ["Your DHL tracking number is 2093586184.", "The order number was 4155550123."])
def test_a_number_named_as_a_tracking_or_order_number_is_not_a_phone(text):
    assert found(text) == []
