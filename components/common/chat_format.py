"""The chat format shared by training data (synthesis), fine-tuning and serving.

A fine-tune served with a different prompt than it was trained on degrades badly, so the system
prompts and user-message layouts live here, in one place, and both sides build messages with these
functions. Bump FORMAT_VERSION on any change: it is logged with every dataset and model.

The describer's user turn is the bare product title (format 2; format 1 prefixed "Product title: "):
`ollama run prodtune-describer "<title>"` then sends exactly the router's conversation, because the
Modelfile's SYSTEM (the prompt below) is what Ollama prepends to a conversation without one.
"""

from __future__ import annotations

FORMAT_VERSION = "2"

DESCRIBER_SYSTEM = (
    "You are a product copywriter for an online store. Given a product title, write an accurate, "
    "helpful product description in plain text."
)

QA_SYSTEM = (
    "You answer customer questions about products using only the product information provided. "
    "If the information does not contain the answer, say that you do not know."
)

# The answer when no product reaches the similarity threshold. Serving returns it without calling
# the QA model; synthesis trains the QA model to give it for an empty context, so both read this one
# string. Users write in English and Portuguese: it says it in both. `{threshold:g}` is the percent.
NO_MATCH_ANSWER = (
    "No matching product was found in the catalogue for this question (no product reached the "
    "{threshold:g}% similarity threshold), so I cannot answer it from product information.\n"
    "Nenhum produto correspondente foi encontrado no catálogo para esta pergunta (nenhum atingiu o "
    "limiar de similaridade de {threshold:g}%), então não posso respondê-la com informações de produtos."
)

Message = dict[str, str]


def describer_messages(title: str, description: str | None = None) -> list[Message]:
    """Title -> description. With `description`, the assistant turn is included (a training example)."""
    messages = [
        {"role": "system", "content": DESCRIBER_SYSTEM},
        {"role": "user", "content": title.strip()},
    ]
    if description is not None:
        messages.append({"role": "assistant", "content": description.strip()})
    return messages


def qa_context(products: list[tuple[str, str]]) -> str:
    """Render (title, description) pairs as the context block the QA model reads."""
    blocks = [f"Product: {title.strip()}\nDescription: {content.strip()}" for title, content in products]
    return "\n\n".join(blocks) if blocks else "(no matching product found)"


def qa_messages(question: str, products: list[tuple[str, str]], answer: str | None = None) -> list[Message]:
    """Question + retrieved product context -> answer, in the same layout for training and serving."""
    messages = [
        {"role": "system", "content": QA_SYSTEM},
        {"role": "user", "content": f"{qa_context(products)}\n\nQuestion: {question.strip()}"},
    ]
    if answer is not None:
        messages.append({"role": "assistant", "content": answer.strip()})
    return messages
