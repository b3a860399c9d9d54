import pytest

from components.common.errors import InputError
from components.synthesis.core import PROMPT_DIR, load_prompt, parse_reply, reply_schema

# Replies are cached by prompt version: editing a released prompt without a new version would
# silently mix old and new data. If this fails, put your change in a new qa_vN.yaml instead.
FROZEN = {
    "qa_v1.yaml": ("qa-v1", "f166c3a6dde3c1cccf010fc69542be9f96aed2c05615729f4ca92bbc2caae870"),
    "qa_v2.yaml": ("qa-v2", "2db566d81e476ebf91c6de51aaaf91733839a26dae71580b614b35e1bab69177"),
}


def test_released_prompts_are_frozen():
    for name, (version, sha) in FROZEN.items():
        prompt = load_prompt(str(PROMPT_DIR / name))
        assert prompt.version == version
        assert prompt.sha256 == sha, f"{name} changed: release it as a new file with a new version"


def test_every_prompt_file_has_a_unique_version():
    versions = [load_prompt(str(p)).version for p in sorted(PROMPT_DIR.glob("*.yaml"))]
    assert versions and len(versions) == len(set(versions))


def test_render_keeps_braces_and_states_the_rules():
    prompt = load_prompt("qa_v1")
    messages = prompt.messages(4, " Mug {large} ", 'Holds 12 oz. JSON-ish text: {"a": 1}')
    system, user = messages[0]["content"], messages[1]["content"]
    assert "Write 4 question/answer pairs" in user
    assert "Title: Mug {large}" in user and 'Description: Holds 12 oz. JSON-ish text: {"a": 1}' in user
    assert "language of the product text" in system
    assert "ONLY facts" in system
    assert '{"pairs": [{"question": "...", "answer": "..."}]}' in system


def test_missing_prompt_is_input_error():
    with pytest.raises(InputError, match="prompt file not found"):
        load_prompt("qa_v999")


def test_schema_bounds_only_when_asked():
    assert "maxItems" not in reply_schema(None)["properties"]["pairs"]
    assert reply_schema(3)["properties"]["pairs"]["maxItems"] == 3


@pytest.mark.parametrize(
    ("content", "finish", "reason"),
    [
        ('{"pairs": [{"question": "Is it red?", "answer": "It is neon pink."}]}', "stop", None),
        ('```json\n{"pairs": [{"question": "Is it red?", "answer": "Pink."}]}\n```', "stop", None),
        ('Sure! {"pairs": [{"question": "Is it red?", "answer": "Pink."}]} Hope it helps.', "stop", None),
        ('[{"question": "Is it red?", "answer": "Pink."}]', "stop", None),
        ("Here are questions about the product.", "stop", "invalid_json"),
        ('{"pairs": "none"}', "stop", "invalid_schema"),
        ('{"pairs": []}', "stop", "invalid_schema"),
        ('{"pairs": [{"question": "Is it red?"}]}', "stop", "invalid_schema"),
        ('{"pairs": [{"question": "Is it red?", "answer": "   "}]}', "stop", "invalid_schema"),
        ('{"pairs": [{"question": "Is it red?", "answer": "Pi', "length", "truncated_reply"),
    ],
)
def test_parse_reply(content, finish, reason):
    result = parse_reply(content, finish)
    assert result.reason == reason
    assert (result.pairs is None) == (reason is not None)
    if reason:
        assert result.detail


def test_list_markers_are_formatting_not_content():
    reply = '{"pairs": [{"question": "2. Is it red?", "answer": "1. It is 12 inches long."}]}'
    (pair,) = parse_reply(reply, "stop").pairs
    assert pair.question == "Is it red?" and pair.answer == "It is 12 inches long."
    (pair,) = parse_reply('{"pairs": [{"question": "Size?", "answer": "12 inches."}]}', "stop").pairs
    assert pair.answer == "12 inches."  # a number that is content stays


def test_select_facts_prefers_sentences_that_restate_the_title():
    from components.synthesis.core import select_facts

    title = "Kuro Insulated Travel Mug - Stainless Steel, Black, 450 ml"
    content = ("Satisfaction guaranteed or your money back. It holds 450 ml of coffee or tea. "
               "The Kuro travel mug is made of stainless steel in black. Ships in a recyclable box.")  # fmt: skip
    assert select_facts(title, content, 1) == ["The Kuro travel mug is made of stainless steel in black."]
    assert select_facts(title, content, 2) == [
        "It holds 450 ml of coffee or tea.",
        "The Kuro travel mug is made of stainless steel in black.",
    ]  # text order, the boilerplate left out
    assert select_facts(title, content, 1, skip=1) == [
        "It holds 450 ml of coffee or tea."
    ]  # a second request
    assert select_facts(title, content, 1, skip=4) == select_facts(title, content, 1)  # wraps around
    assert select_facts("Mug", "Tiny.", 2) == ["Tiny."]  # nothing to choose: the text itself


def test_qa_v2_sends_worked_examples_then_the_product_with_its_facts():
    prompt = load_prompt("qa_v2")
    messages = prompt.messages(
        1, "Zenith Backpack Nylon 30L", "Meet the Zenith backpack: made of nylon. Ideal {x}."
    )
    roles = [m["role"] for m in messages]
    assert roles == ["system", "user", "assistant", "user", "assistant", "user"]
    assert all(parse_reply(m["content"]).pairs for m in messages if m["role"] == "assistant")
    last = messages[-1]["content"]
    assert "Facts:\n- Meet the Zenith backpack: made of nylon." in last and "Ideal {x}." in last
    assert "Write 1 question/answer pair(s)" in last
    # a Portuguese worked example is there for Portuguese products
    assert any("De que material" in m["content"] for m in messages)


def test_a_prompt_with_a_broken_example_is_refused(tmp_path):
    bad = tmp_path / "qa_bad.yaml"
    bad.write_text(
        "version: qa-bad\nsystem: s\nuser: '{k} {title} {content}'\n"
        "examples:\n  - {title: t, content: c, reply: 'not json'}\n",
        encoding="utf-8",
    )
    with pytest.raises(InputError, match="example reply"):
        load_prompt(str(bad))
