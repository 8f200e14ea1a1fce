"""The sentence link graph: nodes, edges kept at their strongest, stable rows, diagnostics."""
from __future__ import annotations

import pytest

from linkscan.generators.graph import graph_diagnostics, graph_links, link_graph
from linkscan.schemas import Chunk, Link


def chunk(index: int, n_units: int) -> Chunk:
    ends = list(range(1, 2 * n_units, 2))
    return Chunk(f"doc-{index:04d}", "doc", index, list(range(2 * n_units)), ends, [f"u{i}" for i in range(n_units)], "t")


def link(chunk_index: int, src: int, dst: int, score: float, reason: str = "shares rare terms: x") -> Link:
    return Link("doc", f"doc-{chunk_index:04d}", src, dst, abs(dst - src), score, "offline", reason)


def test_every_unit_is_a_node_and_units_of_different_chunks_are_distinct():
    graph = link_graph([chunk(0, 30), chunk(1, 20)], [link(0, 2, 25, 7.0), link(1, 2, 15, 6.0)])
    assert graph.number_of_nodes() == 50
    assert graph.has_edge((0, 2), (0, 25)) and graph.has_edge((1, 2), (1, 15))
    assert not graph.has_edge((0, 2), (0, 15))


def test_a_link_found_twice_keeps_its_strongest_score():
    graph = link_graph([chunk(0, 30)], [link(0, 2, 25, 5.0, "weak"), link(0, 25, 2, 9.0, "strong"), link(0, 2, 25, 6.0)])
    assert graph.number_of_edges() == 1
    assert graph.edges[(0, 2), (0, 25)]["score"] == 9.0
    assert [row.reason for row in graph_links(graph)] == ["strong"]


def test_rows_come_out_in_chunk_and_unit_order():
    links = [link(1, 5, 18, 6.0), link(0, 9, 29, 6.0), link(0, 3, 20, 6.0)]
    rows = graph_links(link_graph([chunk(0, 30), chunk(1, 20)], links))
    assert [(r.chunk_id, r.src, r.dst) for r in rows] == [("doc-0000", 3, 20), ("doc-0000", 9, 29), ("doc-0001", 5, 18)]


def test_diagnostics_count_units_edges_linked_units_and_distances():
    graph = link_graph([chunk(0, 30)], [link(0, 2, 25, 7.0), link(0, 2, 6, 6.0), link(0, 10, 22, 6.5)])
    assert graph_diagnostics(graph) == {
        "units": 30, "edges": 3, "linked_units": 5, "distance_histogram": {"20-49": 1, "0-9": 1, "10-19": 1},
    }


def test_a_link_to_a_chunk_outside_the_document_is_refused():
    with pytest.raises(ValueError, match="doc-0007"):
        link_graph([chunk(0, 30)], [link(7, 1, 20, 6.0)])
