"""Tests for `bias_audit` findings a user can trust: identity/negative co-occurrence only when linked in one
clause (names, abstract nouns and other nouns' adjectives left out), review items that show the sentence, a
warning only above a rate, the pronoun minimum on each side, and the English-only coverage note.

Run: .venv/bin/python -m pytest tests/curate/test_bias_cooccurrence.py -q
"""

import pytest

from tests.curate.rows import chat_row
from tunesmith.curate import cooccurrence
from tunesmith.curate.bias import BiasAudit
from tunesmith.curate.lexicon import load_lexicon
from tunesmith.curate.record import Example, Message
from tunesmith.curate.stage import StageContext

NEUTRAL = [chat_row(100 + i, f"What is {i} plus {i}?", f"It is {2 * i}.") for i in range(200)]


def audit(rows, tmp_path, **config):
    config.setdefault("language_sample", 0)
    _, record = BiasAudit(BiasAudit.Config(**config)).run(rows, StageContext("bias_audit", tmp_path / "rejected"))
    return record.findings


def pairs(text: str, window: int = 4) -> list[tuple[str, str]]:
    return [(h.identity, h.negative) for h in cooccurrence.find(text, load_lexicon(), window)]


@pytest.mark.parametrize("text", [
    "Iron Man fights evil.",  # 'man' inside a name
    "Spider-Man beats a violent gang.",  # hyphen-joined name
    "Mothers teach their kids good over evil.",  # 'evil' as an abstract noun
    "The story of a boy and the fight against evil.",
    "Older people with weak immune systems should get the vaccine first.",  # 'weak' describes the systems
    "The man was hit by a violent driver.",  # 'violent' is about the driver
    "Women buy cars that are dangerous.",  # the predicate belongs to the cars
    "Gay people are not evil.",  # a denial, not a stereotype
    "Explain why the Chinese economy is weak.",  # the identity word describes the economy
    "The immune system of older adults is weak.",  # the subject is the immune system
    "My mother said the movie was stupid.",  # the predicate is about the movie
    "The black man was a criminal lawyer.",  # 'criminal' describes the lawyer
    "The women won. The match was violent.",  # different sentences
])
def test_real_data_false_alarms_give_no_pair(text):
    assert pairs(text) == []


@pytest.mark.parametrize("text, expected", [
    ("women are weak and stupid", [("women", "weak"), ("women", "stupid")]),
    ("Lazy immigrants took the jobs.", [("immigrants", "lazy")]),
    ("Muslims are all terrorists.", [("muslims", "terrorists")]),
    ("Women in politics are corrupt.", [("women", "corrupt")]),
    ("WOMEN ARE STUPID", [("women", "stupid")]),  # all caps is not a name
    ("Honestly, German drivers last week were rude.", [("german", "rude")]),  # a person noun keeps the group
])
def test_linked_stereotypes_give_a_pair(text, expected):
    assert pairs(text) == expected


@pytest.mark.parametrize("text", [
    # a singular noun with a determiner or possessive is one person, not a group
    "The old man was too weak to climb the stairs after surgery.",
    "My brother is so lazy, he never does the dishes.",
    "Honestly, the German driver last week was rude.",
    "John's wife is lazy.",
    # a predicate noun phrase describing one person
    "The Joker is an evil man who terrorizes Gotham.",
    "The villain was a violent man.",
    "She is a lazy immigrant.",
    # an identity term inside a relative clause does not take the main clause's predicate
    "Catholic priests who abused children are criminals and should be prosecuted.",
    "The company that hires women is stupid.",
])
def test_individuals_and_relative_clauses_give_no_pair(text):
    """The hostile review's false alarms: each sentence is about one person or about another noun's group."""
    assert pairs(text) == []


@pytest.mark.parametrize("text, expected", [
    ("Africans are primitive and uncivilized.", [("africans", "primitive"), ("africans", "uncivilized")]),
    ("Women are too emotional and weak to lead a company.", [("women", "weak")]),  # unlisted adjective in a chain
    ("Women are emotional, weak and stupid.", [("women", "weak")]),  # a comma list stays one predicate
    ("Typical woman driver, so reckless.", [("woman", "reckless")]),  # no determiner: the stereotype, not a person
    ("The Chinese are lazy.", [("chinese", "lazy")]),  # a sentence's first 'The' does not make a name
    ("The Muslim community is violent.", [("muslim", "violent")]),  # a collective noun is a group
    ("Women who drive are reckless.", [("women", "reckless")]),  # the head noun before 'who' keeps the predicate
    ("Everyone knows that women are weak.", [("women", "weak")]),  # 'that' opening what is said, not a relative
    ("Who says women are weak?", [("women", "weak")]),  # a question's 'who' opens no relative clause
    ("A woman is too weak to lead.", [("woman", "weak")]),  # a generic subject speaks of all women
    ("Every woman is weak.", [("woman", "weak")]),
    ("They are lazy immigrants.", [("immigrants", "lazy")]),  # a plural predicate noun is a group
    ("Muslim men are violent.", [("muslim", "violent"), ("men", "violent")]),  # two terms, one noun phrase
    ("Women's husbands are lazy.", [("husbands", "lazy")]),  # a possessive's owner is not the subject
])
def test_group_statements_the_review_found_missed_give_a_pair(text, expected):
    assert pairs(text) == expected


@pytest.mark.parametrize("term, category", [
    ("african", "race_ethnicity"), ("africans", "race_ethnicity"), ("europeans", "race_ethnicity"),
    ("asians", "race_ethnicity"), ("arabs", "race_ethnicity"), ("latinos", "race_ethnicity"),
    ("mexicans", "nationality"), ("indians", "nationality"), ("egyptians", "nationality"),
    ("greeks", "nationality"), ("brothers", "gender"), ("housewives", "gender"), ("amputees", "disability"),
])
def test_demonyms_and_plurals_are_identity_terms(term, category):
    """'african american' alone used to leave 'Africans are primitive' unseen; each plural has its category."""
    assert load_lexicon().label[term] == ("identity", category)


def test_the_reviewed_sentences_through_the_stage_give_review_items_only_for_group_statements(tmp_path):
    false_alarms = ["The old man was too weak to climb the stairs after surgery.",
                    "My brother is so lazy, he never does the dishes.",
                    "The Joker is an evil man who terrorizes Gotham.", "The villain was a violent man.",
                    "Catholic priests who abused children are criminals and should be prosecuted."]
    biased = ["Africans are primitive and uncivilized.", "Women are too emotional and weak to lead a company."]
    rows = [chat_row(i, "Tell me something.", text) for i, text in enumerate([*false_alarms, *biased])]
    findings = audit(rows, tmp_path)
    assert {item["text"] for item in findings["review"]} == set(biased)
    rows_by_category = {c: v["rows"] for c, v in findings["cooccurrence"].items() if v["rows"]}
    assert rows_by_category == {"race_ethnicity": 1, "gender": 1}


def test_window_bounds_the_distance():
    text = "Women are so very really weak."
    assert pairs(text, window=4) == [("women", "weak")]  # four words between
    assert pairs(text, window=3) == []


def test_clause_punctuation_and_conjunctions_split(tmp_path):
    assert pairs("The women left early, violent storms came.") == []
    assert pairs("Women are here because violent storms came.") == []


def test_the_false_alarms_give_no_finding_and_the_biased_sentence_a_review_item(tmp_path):
    rows = [
        chat_row(0, "Iron Man fights evil.", "He wins in the end."),
        chat_row(1, "Why is the film about good over evil?", "Mothers teach good over evil."),
        chat_row(2, "Who should get the vaccine?", "Older people with weak immune systems, first."),
        chat_row(3, "Write a line for my villain.", "Everyone knows women are weak and stupid. Sad!"),
        *NEUTRAL,
    ]
    findings = audit(rows, tmp_path)
    co = findings["cooccurrence"]
    assert {c: v["rows"] for c, v in co.items() if v["rows"]} == {"gender": 1}
    assert co["gender"]["pairs"] == {"women+stupid": 1, "women+weak": 1}
    assert findings["review_total"] == 2
    first = findings["review"][0]
    assert first == {
        "kind": "identity_negative", "id": "s:3", "where": "s.jsonl:4", "field": "response",
        "text": "Everyone knows women are weak and stupid.",
        "detail": "'women' (gender) and 'weak' are 1 word(s) apart in one clause: check whether the text states "
                  "or endorses a stereotype",
    }
    # 1 row in 204 is under the default 1% rate: a review item, not a warning
    assert not any(w.startswith("gender:") for w in findings["warnings"])
    loud = audit(rows, tmp_path, cooccurrence_warn_rate=0.001)
    assert any(w.startswith("gender: 1 row(s) (0.5%) link a gender term") for w in loud["warnings"])


def test_review_items_are_capped_with_the_full_count(tmp_path):
    rows = [chat_row(i, "Immigrants are lazy.", "No.") for i in range(60)]
    findings = audit(rows, tmp_path)
    assert len(findings["review"]) == 50 and findings["review_total"] == 60
    assert findings["cooccurrence"]["nationality"]["rows"] == 60


def test_rejected_answers_of_preference_rows_are_read(tmp_path):
    row = Example(id="p:0", source="p.jsonl", row=0, line=1,
                  messages=(Message("user", "Describe them."), Message("assistant", "They are people.")),
                  rejected=(Message("assistant", "Immigrants are lazy."),))
    findings = audit([row], tmp_path)
    [item] = findings["review"]
    assert (item["id"], item["field"], item["text"]) == ("p:0", "rejected", "Immigrants are lazy.")


def test_pronoun_minimum_applies_to_each_side(tmp_path):
    # prompts: 19 'he' and no 'she' (under the default minimum of 20); responses: 25 'he', no 'she'
    rows = [chat_row(i, "Did he call?", "Yes, he did.") for i in range(19)]
    rows += [chat_row(100 + i, "Any news?", "He did call.") for i in range(6)]
    findings = audit(rows, tmp_path)
    assert findings["pronouns"]["prompt"]["he"] == 19 and findings["pronouns"]["response"]["he"] == 25
    gender = [w for w in findings["warnings"] if w.startswith("gender:")]
    assert gender == ["gender: 'he' appears 25 times and 'she' never in responses"]
    assert not [w for w in audit(rows, tmp_path, min_pronoun_count=26)["warnings"] if w.startswith("gender:")]
    both = audit(rows, tmp_path, min_pronoun_count=19)["warnings"]
    assert "gender: 'he' appears 19 times and 'she' never in prompts" in both


def test_card_says_the_lexicons_are_english_only(tmp_path):
    english = [chat_row(i, "Can you explain how photosynthesis works in plants?", "Plants turn light into energy.")
               for i in range(2)]
    findings = audit(english, tmp_path, language_sample=10)
    assert findings["languages_covered"] == ["en"]
    assert findings["coverage"].startswith("The bias lexicons are English-only")
    assert not any(w.startswith("languages:") for w in findings["warnings"])
    chinese = [chat_row(10 + i, "请解释一下植物的光合作用是如何进行的？", "植物把光能转化为化学能。") for i in range(3)]
    mixed = audit(english + chinese, tmp_path, language_sample=10)
    assert "60% of the sampled rows are in other languages" in mixed["coverage"]
    assert any(w.startswith("languages: 60% of the sampled rows are not English") for w in mixed["warnings"])
