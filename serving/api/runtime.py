"""Build the real `Responder` for `prodtune serve`: models from the registry (or paths/names), the
router classifier, the embedder, the vector store, and the LangGraph graph of `serving/graph.py`."""

from __future__ import annotations

import sys
from typing import Any

from serving.api.responder import GraphResponder, Responder
from serving.llm.resolve import LlmSettings, ResolvedModel, load_backends


def describe_models(resolved: dict[str, ResolvedModel]) -> dict[str, dict[str, Any]]:
    """What `/v1/models` tells about the backends behind each API model."""
    info = {role: {"backend": r.backend, "model": r.name, "source": r.source} for role, r in resolved.items()}
    return {
        "prodtune-router": {"roles": info},
        "prodtune-describer": info["describer"],
        "prodtune-qa": info["qa"],
    }


def load_components(serving: Any) -> dict[str, Any]:
    """Classifier, embedder and vector store as `serving.config.ServingSettings` names them."""
    from serving.retrieval.embedder import SentenceEmbedder
    from serving.router.classifier import RouterClassifier

    classifier = RouterClassifier.from_path(
        serving.router_train_path, fallback_threshold=serving.router_fallback_threshold
    )
    embedder = SentenceEmbedder(serving.embedding_model_path)
    if serving.vector_backend == "weaviate":
        from serving.retrieval.weaviate_store import WeaviateStore, connect_weaviate

        store: Any = WeaviateStore(connect_weaviate(serving), serving.weaviate_collection)
    else:
        from serving.retrieval.embedded import EmbeddedStore

        store = EmbeddedStore.load(serving.store_path, ef_search=serving.ann_ef_search, mmap=True)
    return {"classifier": classifier, "embedder": embedder, "store": store}


def build_responder(llm: LlmSettings | None = None, info: dict[str, Any] | None = None) -> Responder:
    """Resolve and load both models, then the graph's components, and compile the graph.
    `info`, when given, is filled with what `/v1/models` should say about the backends."""
    from serving import graph
    from serving.config import ServingSettings

    llm = llm or LlmSettings()
    backends, resolved = load_backends(llm)
    for role, res in resolved.items():
        print(f"prodtune serve: {role}: {res.backend} {res.name} from {res.source}", file=sys.stderr)
    if info is not None:
        info.update(describe_models(resolved))
    serving = ServingSettings()
    parts = load_components(serving)
    responder = GraphResponder(
        graph.build_graph,
        classifier=parts["classifier"],
        store=parts["store"],
        embedder=parts["embedder"],
        describer=backends["describer"],
        qa=backends["qa"],
        settings=serving,
    )
    count = getattr(parts["store"], "count", lambda: "?")()
    print(f"prodtune serve: ready ({count} products in the {serving.vector_backend} store)", file=sys.stderr)
    return responder
