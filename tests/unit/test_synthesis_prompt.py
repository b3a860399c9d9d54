import pytest

from components.common.errors import InputError
from components.synthesis.core import PROMPT_DIR, load_prompt, parse_reply, reply_schema

# Replies are cached by prompt version: editing a released prompt without a new version would
# silently mix old and new data. If this fails, put your change in a new qa_vN.yaml instead.
FROZEN = {"qa_v1.yaml": ("qa-v1", "f166c3a6dde3c1cccf010fc69542be9f96aed2c05615729f4ca92bbc2caae870")}


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
