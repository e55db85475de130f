"""Tests for the `bias_audit` inspector: lexicon counts, pronouns, co-occurrence, profanity, languages.

Co-occurrence in one clause (names, abstract nouns, window, review items) is in test_bias_cooccurrence.py.

Run: pytest tests/curate/test_bias.py -q
"""

from importlib import resources

from tests.curate.rows import chat_row
from tunesmith.curate.bias import CATEGORIES, BiasAudit, load_lexicon, scan
from tunesmith.curate.record import Example
from tunesmith.curate.stage import StageContext


def make(i: int, user: str, assistant: str = "Okay.") -> Example:
    return chat_row(i, user, assistant)


ROWS = [
    make(0, "He said he would call him later.", "She agreed with his plan."),
    make(1, "Tell me about his trip.", "He went to Paris with his brother."),
    make(2, "Immigrants are lazy and dangerous, they say.", "That stereotype is false."),
    make(3, "The women won. The match was violent.", "Yes, the final was rough."),
    make(4, "What the hell is this shit?", "Let me explain the error."),
]


def audit(rows, tmp_path, **config):
    kept, record = BiasAudit(BiasAudit.Config(**config)).run(rows, StageContext("bias_audit", tmp_path / "rejected"))
    return kept, record.findings


def test_inspector_keeps_every_row(tmp_path):
    kept, findings = audit(ROWS, tmp_path, language_sample=0)
    assert kept == ROWS
    assert set(findings) == {
        "identity_terms",
        "pronouns",
        "cooccurrence",
        "toxicity",
        "languages",
        "language_sample_size",
        "language_sample_method",
        "language_too_short",
        "languages_covered",
        "coverage",
        "review",
        "review_total",
        "warnings",
    }


def test_pronoun_counts_and_warning(tmp_path):
    _, findings = audit(ROWS, tmp_path, language_sample=0, min_pronoun_count=3)
    pronouns = findings["pronouns"]
    assert pronouns["prompt"] == {"he": 4, "she": 0, "they": 1}
    assert pronouns["response"] == {"he": 3, "she": 1, "they": 0}
    assert pronouns["he_she_ratio"] == 7.0
    assert "gender: 'he' appears 4 times and 'she' never in prompts" in findings["warnings"]
    assert "gender: 'he' appears 3.0x as often as 'she' in responses" in findings["warnings"]


def test_identity_terms_per_category(tmp_path):
    _, findings = audit(ROWS, tmp_path, language_sample=0)
    gender = findings["identity_terms"]["gender"]
    assert gender == {
        "prompt": 1,
        "response": 1,
        "rows": 2,
        "top_terms": {"women": 1, "brother": 1},
        "example_ids": ["s:1", "s:3"],
    }
    assert findings["identity_terms"]["nationality"]["top_terms"] == {"immigrants": 1}
    assert set(findings["identity_terms"]) == set(CATEGORIES)


def test_cooccurrence_is_clause_level(tmp_path):
    _, findings = audit(ROWS, tmp_path, language_sample=0)
    co = findings["cooccurrence"]
    assert co["nationality"] == {
        "rows": 1,
        "rate": 0.2,
        "example_ids": ["s:2"],
        "pairs": {"immigrants+dangerous": 1, "immigrants+lazy": 1},
    }
    assert co["gender"]["rows"] == 0  # 'women' and 'violent' sit in different sentences of row s:3
    # 1 row in 5 is far above the default warn rate, so it is a warning as well as a review item
    assert any(w.startswith("nationality: 1 row(s) (20.0%)") and "s:2" in w for w in findings["warnings"])
    assert [r["id"] for r in findings["review"]] == ["s:2", "s:2"]


def test_toxicity(tmp_path):
    _, findings = audit(ROWS, tmp_path, language_sample=0)
    assert findings["toxicity"] == {"rows": 1, "rate": 0.2, "example_ids": ["s:4"], "top_terms": {"shit": 1}}


def test_phrases_and_possessives():
    lex = load_lexicon()
    assert scan("The old man's dog met an Old Man.", lex) == {"old man": 2}
    assert scan("The women's team; Native Americans' rights", lex) == {"women": 1, "native americans": 1}
    assert scan("a glass of white wine, a straight line, 3 years old", lex) == {}


def test_languages_on_a_seeded_sample(tmp_path):
    rows = [
        make(0, "Can you explain how photosynthesis works in plants?", "Plants turn light into chemical energy."),
        make(1, "What is the capital of Australia and why was it chosen?", "Canberra was a compromise."),
        make(2, "Pouvez-vous m'expliquer pourquoi le ciel est bleu pendant la journée ?", "La lumière est diffusée."),
        make(3, "Kannst du mir bitte erklären, warum der Himmel am Tag blau ist?", "Das Licht wird gestreut."),
    ]
    _, findings = audit(rows, tmp_path)
    assert findings["languages"] == {"en": 2, "fr": 1, "de": 1}
    assert findings["language_sample_size"] == 4
    _, first = audit(rows, tmp_path, language_sample=2)
    _, second = audit(rows, tmp_path, language_sample=2)
    assert first["language_sample_size"] == 2
    assert first["languages"] == second["languages"] and sum(first["languages"].values()) == 2


def test_lexicon_files_state_provenance():
    root = resources.files("tunesmith") / "assets" / "lexicons"
    for name in [f"identity_{c}.txt" for c in CATEGORIES] + ["negative.txt", "profanity.txt"]:
        text = (root / name).read_text(encoding="utf-8")
        assert text.startswith("#") and "review before relying on it" in text
    assert "review before relying on it" in (root / "pronouns.json").read_text(encoding="utf-8")
