"""Rows with tools through `tunesmith.chat`: a template that knows tools gets `tools=` and the tool calls; one that
does not gets them as JSON text in the turns (said once in the log), and the trained spans cover the assistant's
tool calls. Plain rows keep the fast path.

Run: .venv/bin/python -m pytest tests/curate/test_chat_tools.py -q
"""

import logging

import pytest
from transformers import AutoTokenizer

from tunesmith import chat
from tunesmith.chat import IGNORE_INDEX, encode_rows, tools_as_text

TOOLS = [{"type": "function", "function": {"name": "add", "parameters": {"type": "object"}}}]
ROW = {"id": "t:0", "tools": TOOLS, "messages": [
    {"role": "user", "content": "Add 2 and 3."},
    {"role": "assistant", "content": "", "tool_calls": [
        {"id": "c1", "type": "function", "function": {"name": "add", "arguments": '{"a": 2, "b": 3}'}}]},
    {"role": "tool", "content": "5", "tool_call_id": "c1", "name": "add"},
    {"role": "assistant", "content": "The sum is 5."},
]}
PLAIN = {"id": "p:0", "messages": [{"role": "user", "content": "Say hi."}, {"role": "assistant", "content": "Hi."}]}
TOOL_TEMPLATE = (
    "{% if tools %}<|im_start|>system\nTOOLS {{ tools | tojson }}<|im_end|>\n{% endif %}"
    "{% for m in messages %}<|im_start|>{{ m.role }}\n{% if m.tool_calls %}{% for c in m.tool_calls %}"
    "CALL {{ c.function.name }} {{ c.function.arguments | tojson }}{% endfor %}{% else %}{{ m.content }}{% endif %}"
    "<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


@pytest.fixture
def tokenizer(tiny_tokenizer_dir):
    return AutoTokenizer.from_pretrained(tiny_tokenizer_dir)


def trained_texts(tokenizer, messages, tools):
    text, spans = chat._tool_spans(tokenizer, messages, tools)
    return text, [text[lo:hi] for lo, hi in spans]


def test_a_template_without_tools_gets_calls_and_results_as_json_text_and_says_so_once(tokenizer, caplog):
    chat._TOOLS_AS_TEXT_SAID.clear()
    with caplog.at_level(logging.WARNING):
        messages, tools = chat._tool_conversation(tokenizer, ROW)
        chat._tool_conversation(tokenizer, ROW)
    assert caplog.text.count("does not render tools") == 1
    assert tools is None and [m["role"] for m in messages] == ["system", "user", "assistant", "user", "assistant"]
    assert messages[0]["content"].startswith("Available tools: [") and '"add"' in messages[0]["content"]
    assert messages[2]["content"] == '{"tool_calls": [{"name": "add", "arguments": "{\\"a\\": 2, \\"b\\": 3}"}]}'
    assert messages[3]["content"] == '[{"tool_result": "5", "name": "add"}]'
    _, trained = trained_texts(tokenizer, messages, tools)
    assert trained == [messages[2]["content"] + "<|im_end|>", "The sum is 5.<|im_end|>"]


def test_consecutive_tool_results_become_one_user_turn():
    messages = [{"role": "user", "content": "q"},
                {"role": "assistant", "content": "", "tool_calls": [{"function": {"name": "f", "arguments": "{}"}}]},
                {"role": "tool", "content": "1"}, {"role": "tool", "content": "2"},
                {"role": "assistant", "content": "done"}]
    out = tools_as_text(messages, None)
    assert [m["role"] for m in out] == ["user", "assistant", "user", "assistant"]
    assert out[2]["content"] == '[{"tool_result": "1"}, {"tool_result": "2"}]'


def test_a_template_that_knows_tools_gets_tools_and_tool_calls(tokenizer):
    tokenizer.chat_template = TOOL_TEMPLATE
    messages, tools = chat._tool_conversation(tokenizer, ROW)
    assert tools == TOOLS
    text, trained = trained_texts(tokenizer, messages, tools)
    assert text.startswith('<|im_start|>system\nTOOLS [{"type": "function"')
    assert trained == ['CALL add {"a": 2, "b": 3}<|im_end|>', "The sum is 5.<|im_end|>"]  # arguments as a dict


def test_encode_rows_trains_tool_rows_and_leaves_plain_rows_as_they_were(tokenizer):
    [alone] = encode_rows(tokenizer, [PLAIN], max_seq_len=512)
    mixed = encode_rows(tokenizer, [ROW, PLAIN], max_seq_len=512)
    assert mixed[1] == alone  # the plain row took the unchanged fast path
    eot = tokenizer.convert_tokens_to_ids("<|im_end|>")
    tool_labels = [label for label in mixed[0]["labels"] if label != IGNORE_INDEX]
    assert tool_labels.count(eot) == 2  # both assistant turns, the tool call and the answer, end trained
    assert len(mixed[0]["input_ids"]) > len(alone["input_ids"])


def test_token_stats_counts_tool_rows_as_training_encodes_them(tokenizer, tmp_path):
    """Tool calls and definitions take tokens: token_stats must count them, as train's encode_rows does."""
    from tunesmith.curate.record import Example, Message
    from tunesmith.curate.stage import StageContext
    from tunesmith.curate.token_stats import TokenStats

    turns = tuple(Message(m["role"], m["content"], tool_calls=m.get("tool_calls"), tool_call_id=m.get("tool_call_id"),
                          name=m.get("name")) for m in ROW["messages"])
    example = Example(id="t:0", source="t.jsonl", row=0, line=1, messages=turns, tools=TOOLS)
    stage = TokenStats(TokenStats.Config(max_seq_len=512))
    ctx = StageContext(stage.name, tmp_path / "rejected", extra={"tokenizer": tokenizer})
    kept, record = stage.run([example], ctx)
    [encoded] = encode_rows(tokenizer, [example.to_json()], max_seq_len=512)
    assert kept == [example] and record.findings["tool_rows"] == 1
    assert record.findings["length"]["max"] == len(encoded["input_ids"])
    assert record.findings["trainable_tokens"]["total"] == sum(label != IGNORE_INDEX for label in encoded["labels"])
