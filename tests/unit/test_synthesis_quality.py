from components.synthesis.quality import Deduplicator, Grounding, content_words

TITLE = "Girls Ballet Tutu Neon Pink"
TEXT = "High quality 3 layer ballet tutu. 12 inches in length. Made of soft nylon tulle with elastic waist."


def grounding(**kw):
    return Grounding(TITLE, TEXT, min_support=kw.get("min_support", 0.6), min_answer_words=kw.get("words", 2))


def test_answer_copied_from_description_is_kept():
    verdict = grounding().check("It is 12 inches in length and made of soft nylon tulle.")
    assert verdict.keep and verdict.reason is None
    assert verdict.support == 1.0


def test_inflected_words_match_on_prefix():
    # "layers"/"layer", "ballets"/"ballet": plural forms of words in the text are supported
    assert grounding().check("The tutu has three layers of ballet tulle.").support >= 0.75


def test_invented_facts_are_dropped_with_the_missing_words():
    verdict = grounding().check("It is waterproof, machine washable and comes with a matching tiara.")
    assert not verdict.keep
    assert verdict.reason == "unsupported_answer"
    assert "tiara" in verdict.detail and "waterproof" in verdict.detail


def test_number_not_in_text_is_dropped_even_if_words_match():
    verdict = grounding().check("The ballet tutu is 14 inches in length.")
    assert verdict.reason == "unsupported_number"
    assert "14" in verdict.detail


def test_numbers_in_text_are_fine():
    assert grounding().check("It is a 3 layer tutu, 12 inches long.").keep


def test_empty_or_tiny_answer_is_too_short():
    assert grounding().check("Yes.").reason == "answer_too_short"
    assert grounding().check("").reason == "answer_too_short"


def test_portuguese_with_accents_folded():
    text = "Camiseta de algodão orgânico azul, lavável na máquina."
    g = Grounding("Camiseta Algodão", text, min_support=0.6, min_answer_words=2)
    assert g.check("A camiseta é de algodao organico e lavavel na maquina.").keep
    assert g.check("A camiseta é de seda italiana importada.").reason == "unsupported_answer"


def test_stopwords_do_not_count_as_content():
    assert content_words("What is the size of this product?") == ["size"]


def test_duplicates_within_product_and_across_products():
    dedup = Deduplicator()
    seen_a: set[str] = set()
    assert dedup.check(seen_a, "What is it made of?", "Nylon tulle.") is None
    assert dedup.check(seen_a, "what is it  made of", "Something else.") == "duplicate_question"
    seen_b: set[str] = set()
    assert dedup.check(seen_b, "What is it made of?", "Cotton.") is None  # same question, other product
    assert dedup.check(seen_b, "What is it made of?", "Cotton.") == "duplicate_question"
    seen_c: set[str] = set()
    assert dedup.check(seen_c, "What is it made of?", "Nylon tulle.") == "duplicate_pair"


def test_question_must_be_a_question_about_this_product():
    g = grounding()
    assert g.check_question("How long is the ballet tutu?") is None
    assert g.check_question("What is it?") is None  # generic, names nothing: allowed
    assert g.check_question("How does it work? What size is it?") is None
    assert g.check_question("What is the product's purpose?") is None
    assert g.check_question("Girls Ballet Tutu Neon Pink").reason == "not_a_question"
    assert g.check_question("...").reason == "not_a_question"
    off = g.check_question("What is the most popular product in the world?")
    assert off.reason == "off_topic_question" and "popular" in off.detail
