"""Column profiling (tunesmith/curate/profile.py) on hand-made alpaca-shaped rows.

Run: .venv/bin/python -m pytest -q tests/curate/test_profile.py
"""

import json

from tunesmith.curate.placeholders import find_placeholders
from tunesmith.curate.profile import ColumnProfile
from tunesmith.curate.record import Example, Message
from tunesmith.curate.sources import SourceConfig, read_source
from tunesmith.curate.stage import StageContext
from tunesmith.curate.validate import Validate

WORDS = "river stone cloud maple lantern copper meadow harbor violet ember".split()


def _alpaca(i: int, instruction: str, output: str, input_: str = "") -> tuple[dict, tuple, Example]:
    fields = {"instruction": instruction, "input": input_, "output": output}
    user = instruction + (f"\n\n{input_}" if input_ else "")
    messages = (Message("user", user), Message("assistant", output))
    return fields, messages, Example(id=f"a:{i}", source="a.jsonl", row=i, line=i + 1, messages=messages)


def _varied(i: int) -> str:
    return f"{WORDS[i % 10]} {WORDS[(i // 10) % 10]} {WORDS[(i // 100) % 10]} number {i}"


def _profile(rows) -> ColumnProfile:
    profile = ColumnProfile()
    for fields, messages, example in rows:
        profile.add(fields, messages, example=example)
    return profile


def test_constant_instruction_in_5000_rows_warns_with_the_value():
    """The issue's case: one instruction in all 5,000 rows and nothing else in the prompt (empty inputs) is named
    with its value and row count."""
    profile = _profile(_alpaca(i, "Translate to French.", f"Phrase {i}") for i in range(5000))
    warnings = profile.warnings()
    assert len(warnings) == 1
    assert warnings[0] == 'instruction is one value in all 5,000 rows: "Translate to French."; it tells the model nothing'
    instruction = profile.findings()["fields"]["instruction"]
    assert instruction["distinct"] == 1 and instruction["top_share"] == 1.0
    assert profile.findings()["prompt"]["distinct"] == 1


def test_a_constant_instruction_beside_varying_inputs_is_a_note_not_a_warning():
    """One instruction over 300 different inputs is an ordinary task set: the whole prompt varies, so the
    constant instruction is a neutral note in the findings and nothing is warned."""
    profile = _profile(_alpaca(i, "Translate to French.", f"Phrase {_varied(i)}", input_=_varied(i))
                       for i in range(300))
    assert profile.warnings() == []
    (note,) = profile.findings()["notes"]
    assert note.startswith('instruction is one value in 300 of 300 rows: "Translate to French."')
    assert "the prompt still varies (through input)" in note


def test_a_constant_instruction_with_mostly_empty_inputs_warns_and_gives_the_prompt_share():
    """Inputs filled in only 40 of 100 rows leave the whole prompt constant in 60%: still a warning, and the
    sentence says how constant the prompt is, not only the instruction."""
    rows = [_alpaca(i, "Fix the grammar.", f"Fixed {i}", input_=_varied(i) if i < 40 else "") for i in range(100)]
    (warning,) = _profile(rows).warnings()
    assert warning.startswith('instruction is one value in all 100 rows: "Fix the grammar."')
    assert warning.endswith("(the whole prompt is one value in 60 of 100 rows)")


REVIEWS = [
    "The pasta was cold and the waiter ignored us for twenty minutes.",
    "Lovely terrace, friendly staff, and the tiramisu was the best I have had.",
    "Food was fine, nothing special, prices about what you would expect.",
    "We waited an hour for a table we had booked.",
]


def test_a_sentiment_classification_set_gives_no_warning_and_reports_its_labels():
    """The reviewer's case: 40 alpaca rows, one instruction, a different review in each input, three labels.
    Neither the constant instruction nor the shared labels are warnings; the label distribution is a finding."""
    instruction = "Classify the sentiment of this restaurant review as positive, negative or neutral."
    labels = ("negative", "positive", "neutral", "negative")
    rows = [_alpaca(i, instruction, labels[i % 4], input_=f"{REVIEWS[i % 4]} (visit {i}, {_varied(i)})")
            for i in range(40)]
    profile = _profile(rows)
    assert profile.warnings() == []
    found = profile.findings()
    assert found["identical_responses"]["share"] == 1.0  # still measured, only not warned about
    assert found["answer_labels"] == {"distinct": 3, "counts": {"negative": 20, "positive": 10, "neutral": 10}}
    notes = found["notes"]
    assert any(n.startswith("answers look like class labels (3 distinct values)") for n in notes)
    assert any(n.startswith('instruction is one value in 40 of 40 rows: "Classify the sentiment')
               and "the prompt still varies (through input)" in n for n in notes)


def test_the_classification_set_read_through_validate_has_no_profile_warning(tmp_path):
    """The same 40-row alpaca file through the real reader and `validate`: no warning, labels in the findings."""
    instruction = "Classify the sentiment of this restaurant review as positive, negative or neutral."
    path = tmp_path / "sentiment.jsonl"
    path.write_text("".join(json.dumps({"instruction": instruction, "input": f"{REVIEWS[i % 4]} (visit {i})",
                                        "output": ("negative", "positive", "neutral", "negative")[i % 4]}) + "\n"
                            for i in range(40)))
    examples, _ = read_source(SourceConfig(path=str(path)))
    kept, stage = Validate().run(examples, StageContext("validate", tmp_path / "rejected"))
    assert len(kept) == 40 and stage.findings["warnings"] == []
    assert stage.findings["profile"]["answer_labels"]["counts"] == {"negative": 20, "positive": 10, "neutral": 10}


def test_a_few_long_canned_answers_are_not_labels_and_still_warn():
    """Five 20-word stock replies shared by 100 different prompts are memorised text, not class labels."""
    canned = [" ".join([f"reply{k}"] + WORDS * 2) for k in range(5)]
    profile = _profile(_alpaca(i, _varied(i), canned[i % 5]) for i in range(100))
    assert "answer_labels" not in profile.findings()
    (warning,) = profile.warnings()
    assert warning.startswith("100 of 100 rows (100%) give the same answer")


def test_near_constant_instruction_warns_with_its_share():
    """60% of rows with one instruction is near-constant: the warning gives count and share."""
    rows = [_alpaca(i, "Summarise." if i % 5 < 3 else _varied(i), f"Answer {i}") for i in range(100)]
    (warning,) = _profile(rows).warnings()
    assert "60 of 100 rows (60%)" in warning and '"Summarise."' in warning


def test_varied_data_gives_no_warning():
    """Distinct instructions, mostly empty inputs (normal for alpaca) and distinct answers: nothing to warn about."""
    profile = _profile(_alpaca(i, _varied(i), f"Answer {_varied(i)}") for i in range(300))
    assert profile.warnings() == []
    assert profile.review_items() == []
    assert profile.findings()["fields"]["input"]["top_share"] == 1.0  # the empty input is shown, not warned


def test_small_data_is_not_called_constant():
    """Below 20 rows a shared instruction is too little evidence for a warning."""
    assert _profile(_alpaca(i, "Same.", f"A {i}") for i in range(10)).warnings() == []


def test_code_braces_are_not_placeholders():
    """Python format strings, JS template literals, LaTeX and JSON braces are not unfilled templates."""
    answers = [
        "```python\nprint(f'{x}')\n```",
        "def show(x):\n    return '{x}'.format(x=x)",
        "Use `{name}` in a format string.",
        "const s = `${name}`;",
        "The fraction is $\\frac{a}{b}$ and $x^{n}$.",
        '{"name": "Ada", "age": 36}',
    ]
    assert [find_placeholders(text) for text in answers] == [[]] * len(answers)
    profile = _profile(_alpaca(i, _varied(i), text) for i, text in enumerate(answers))
    assert profile.findings()["placeholders"]["rows"] == 0 and profile.review_items() == []


def test_unfilled_template_is_found_warned_and_listed_for_review():
    """`Dear {{name}},` in one answer of 30 is a warning and a review item naming the row and the span."""
    rows = [_alpaca(i, _varied(i), f"Answer {i}") for i in range(29)]
    rows.append(_alpaca(29, "Write a letter.", "Dear {{name}},\nThank you for your order."))
    profile = _profile(rows)
    assert profile.findings()["placeholders"] == {"rows": 1, "by_kind": {"double_brace": 1}}
    (warning,) = profile.warnings()
    assert warning.startswith("1 of 30 answers hold unfilled template placeholders") and "{{name}}" in warning
    (item,) = profile.review_items()
    assert item["kind"] == "placeholder" and item["id"] == "a:29" and item["where"] == "a.jsonl:30"
    assert item["text"] == "{{name}}"


def test_other_placeholder_styles_are_found():
    """Single-brace identifiers in prose, ALL-CAPS tags and [Insert ...] prompts each count; links do not."""
    assert find_placeholders("Hello {customer_name}, welcome!") == [("single_brace", "{customer_name}")]
    assert find_placeholders("Signed, <YOUR_NAME>") == [("caps_tag", "<YOUR_NAME>")]
    assert find_placeholders("Regards, [Insert name here]") == [("bracket_prompt", "[Insert name here]")]
    assert find_placeholders("See [your profile](https://example.com).") == []
    assert find_placeholders("Line one<BR>line two") == []


def test_a_rare_bracket_prompt_is_a_review_item_not_a_warning():
    """`[Your Name]` closing one letter in 200 answers can be intended: it is listed for review, not warned."""
    rows = [_alpaca(i, _varied(i), f"Answer {i}") for i in range(199)]
    rows.append(_alpaca(199, "Write a letter.", "Best regards,\n[Your Name]"))
    profile = _profile(rows)
    assert profile.warnings() == []
    assert [item["text"] for item in profile.review_items()] == ["[Your Name]"]


def test_many_identical_answers_warn():
    """40 of 100 rows answering 'I cannot help with that.' is an identical-response rate worth a warning."""
    rows = [_alpaca(i, _varied(i), "I cannot help with that." if i < 40 else f"Answer {i}") for i in range(100)]
    profile = _profile(rows)
    assert profile.findings()["identical_responses"] == {"rows": 40, "share": 0.4}
    (warning,) = profile.warnings()
    assert warning.startswith("40 of 100 rows (40%) give the same answer as a row with a different prompt")


def test_exact_duplicate_rows_are_not_identical_answers():
    """Rows repeating both prompt and answer are exact_dedup's to drop, so they do not count as shared answers."""
    rows = [_alpaca(i, _varied(i % 60), f"Answer {i % 60}") for i in range(100)]  # 40 exact repeats
    profile = _profile(rows)
    assert profile.findings()["identical_responses"] == {"rows": 0, "share": 0.0}
    assert profile.warnings() == []


def test_a_constant_user_turn_warns_when_there_are_no_fields():
    """A chat-format row has no prompt fields: a user turn that never changes is named instead."""
    profile = ColumnProfile()
    for i in range(30):
        profile.add(None, (Message("user", "Tell me a joke."), Message("assistant", f"Joke number {i}.")))
    (warning,) = profile.warnings()
    assert warning.startswith('the user turn is one value in all 30 rows: "Tell me a joke."')


def test_rejected_answers_of_preference_rows_are_profiled():
    """A preference row's rejected answer is its own column and is scanned for placeholders too."""
    messages = (Message("user", "Greet Ada."), Message("assistant", "Hello Ada!"))
    example = Example(id="p:0", source="p.jsonl", row=0, line=1, messages=messages,
                      rejected=(Message("assistant", "Hello {{name}}!"),))
    profile = ColumnProfile()
    profile.add({"prompt": "Greet Ada.", "chosen": [], "rejected": []}, messages, example=example)
    found = profile.findings()
    assert found["roles"]["rejected"]["rows"] == 1
    assert found["placeholders"]["rows"] == 1
    assert found["not_profiled"] == {"chosen": "list", "rejected": "list"}


def test_profile_stops_at_max_rows_and_says_so():
    """Past max_rows the hashes stop growing (bounded memory) and the findings give the profiled count."""
    profile = ColumnProfile(max_rows=50)
    for i in range(80):
        profile.add(*_alpaca(i, _varied(i), f"Answer {i}")[:2])
    found = profile.findings()
    assert found["rows"] == 80 and found["profiled_rows"] == 50
    assert found["fields"]["instruction"]["rows"] == 50


# The reviewer's 20 technical answers: (prompt, answer). Only the first five hold real unfilled placeholders.
TECHNICAL = [
    ("Write a welcome email.", "Hi {{first_name}},\n\nThanks for signing up! Your account is ready to use."),
    ("Write a product announcement.", "Introducing <PRODUCT_NAME>: the fastest way to sync files across devices."),
    ("Write a support request.", "Dear support team,\n\nI am writing about [insert issue] that began last week."),
    ("Close the email politely.", "Thanks again for your help.\n\nBest regards,\n[Your Name]"),
    ("Write a repair request to my landlord.", "Dear [Landlord's Name],\n\nThe heating in my flat has failed."),
    ("How do I show a user's name?", "In Jinja you write {{ user.name }} inside the HTML and it is filled at render."),
    ("How do I use the host name fact in Ansible?", "Reference it as {{ ansible_hostname }} in any task."),
    ("How do I bind text in a component?", "Add this to the markup:\n<span>Message: {{ msg }}</span>\nIt updates live."),
    ("What is a singleton set?", "The set whose only element is x is written {x}; its power set is {∅, {x}}."),
    ("What is the union of two singletons?", "The union of {a} and {b} is the set {a, b}."),
    ("How does the model know a sequence ended?", "The tokenizer appends <EOS> at the end of every sequence."),
    ("How are batches padded?", "Shorter sequences are filled with <PAD> tokens up to the longest one."),
    ("What happens to unknown words?", "Words missing from the vocabulary become <UNK> before embedding."),
    ("How do I save in vim?", "Press <ESC> to leave insert mode, type :wq and press <ENTER>."),
    ("How do I fetch one user?", "A GET request to /users/{id} returns that user as JSON."),
    ("How do I list an order's lines?", "Call GET /orders/{orderId}/items with your API key in the header."),
    ("How do I build a greeting string in C#?", 'In C# you can write $"Hello {name}" to build the greeting.'),
    ("What does this Handlebars line do?", "Handlebars renders {{title}} from the object you pass in."),
    ("How do I configure the broker?", "Set CELERY_BROKER_URL in the environment and restart the worker."),
    ("What is a dict literal?", "A literal such as {'a': 1} maps keys to values, and [1, 2] is a list."),
]


def test_the_reviewers_technical_answers_yield_exactly_the_real_placeholders():
    """Of 20 technical answers only the five with real leftovers are found: template syntax being explained
    (Jinja, Ansible named in the prompt, a Vue view line), set notation, special tokens, keys, REST paths and
    C# interpolation are not; `[Landlord's Name]` is. The warning's example is a real finding."""
    found = [(i, hit) for i, (prompt, answer) in enumerate(TECHNICAL)
             for hit in find_placeholders(answer, context=prompt)]
    assert found == [
        (0, ("double_brace", "{{first_name}}")),
        (1, ("caps_tag", "<PRODUCT_NAME>")),
        (2, ("bracket_prompt", "[insert issue]")),
        (3, ("bracket_prompt", "[Your Name]")),
        (4, ("bracket_prompt", "[Landlord's Name]")),
    ]
    rows = []
    for i, (prompt, answer) in enumerate(TECHNICAL):
        messages = (Message("user", prompt), Message("assistant", answer))
        rows.append(({"prompt": prompt}, messages,
                     Example(id=f"t:{i}", source="t.jsonl", row=i, line=i + 1, messages=messages)))
    profile = _profile(rows)
    assert [item["id"] for item in profile.review_items()] == ["t:0", "t:1", "t:2", "t:3", "t:4"]
    (warning,) = [w for w in profile.warnings() if "placeholders" in w]
    assert warning.startswith("5 of 20 answers hold unfilled template placeholders") and "'{{first_name}}'" in warning


def test_known_angle_names_and_template_words_are_data_not_placeholders():
    """Keys and special tokens come from the packaged list; "template" near double braces means they are taught."""
    assert find_placeholders("Hit <TAB> to complete, <CR><LF> ends the line, [CLS] and <SEP> mark BERT input.") == []
    assert find_placeholders("In the template, {{ title }} is replaced by the page title.") == []
    assert find_placeholders("Dear {{ customer }}, your parcel left today.") == [("double_brace", "{{ customer }}")]
    assert find_placeholders("Your ticket {ticket_id} is closed.") == [("single_brace", "{ticket_id}")]


def test_a_placeholder_in_a_rejected_answer_is_named_as_the_rejected_side():
    """A preference row's rejected answer is not what the model learns to write: its review item says so."""
    example = Example(id="p:0", source="p.jsonl", row=0, line=1,
                      messages=(Message("user", "Email the client."), Message("assistant", "Done, I sent it.")),
                      rejected=(Message("assistant", "Hi [Client Name], thanks, [Your Name]"),))
    profile = ColumnProfile()
    profile.add({}, example.messages, example=example)
    [item] = profile.review_items()
    assert item["field"] == "rejected" and "rejected answer" in item["detail"]
    assert profile.findings()["placeholders"]["rows"] == 1


def test_a_placeholder_named_in_chinese_is_found():
    assert find_placeholders("亲爱的{{姓名}}，祝你生日快乐！") == [("double_brace", "{{姓名}}")]
