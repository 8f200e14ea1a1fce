"""The sentence link graph of a document: units as nodes, links as weighted edges.

Nodes are ``(chunk_index, unit)`` pairs (unit indices restart in every chunk, as in the chunks
artifact); each edge keeps the strongest link found between its two units with its score, finder,
reason and distance. The graph is persisted as the ``links`` artifact (one row per edge), and its
diagnostics (edges per unit, distance histogram) go to the manifest.
"""
from __future__ import annotations

from collections import Counter
from typing import Iterable

import networkx as nx

from linkscan.pipeline.inspect import distance_bucket
from linkscan.schemas import Chunk, Link


def link_graph(chunks: Iterable[Chunk], links: Iterable[Link]) -> nx.Graph:
    """The document's graph: every unit of ``chunks`` is a node, every link an edge."""
    graph = nx.Graph()
    chunk_index: dict[str, int] = {}
    for chunk in chunks:
        chunk_index[chunk.chunk_id] = chunk.chunk_index
        graph.add_nodes_from((chunk.chunk_index, unit) for unit in range(len(chunk.sentences)))
    for link in links:
        if link.chunk_id not in chunk_index:
            raise ValueError(f"link {link.src}->{link.dst} names chunk {link.chunk_id}, which is not in the document")
        index = chunk_index[link.chunk_id]
        a, b = (index, link.src), (index, link.dst)
        if graph.has_edge(a, b) and graph.edges[a, b]["score"] >= link.score:
            continue
        graph.add_edge(
            a, b, doc_id=link.doc_id, chunk_id=link.chunk_id, src=link.src, dst=link.dst,
            distance=link.distance, score=link.score, finder=link.finder, reason=link.reason,
        )
    return graph


def graph_links(graph: nx.Graph) -> list[Link]:
    """The edges as ``links`` rows, in a stable order (chunk, source unit, target unit)."""
    rows = [
        Link(
            doc_id=data["doc_id"], chunk_id=data["chunk_id"], src=data["src"], dst=data["dst"],
            distance=data["distance"], score=data["score"], finder=data["finder"], reason=data["reason"],
        )
        for _, _, data in graph.edges(data=True)
    ]
    return sorted(rows, key=lambda link: (link.chunk_id, link.src, link.dst))


def graph_diagnostics(graph: nx.Graph) -> dict:
    """Counts the manifest sums over documents: units, edges, linked units, distance histogram."""
    histogram = Counter(distance_bucket(data["distance"]) for _, _, data in graph.edges(data=True))
    return {
        "units": graph.number_of_nodes(),
        "edges": graph.number_of_edges(),
        "linked_units": sum(1 for node in graph.nodes if graph.degree(node) > 0),
        "distance_histogram": dict(histogram),
    }
