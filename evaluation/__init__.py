"""Long-document evaluation: benchmarks, retrievers, metrics, the LLM protocol and reports.

- ``benchmarks``: loaders for the plain JSONL format and the paper's test-set file; suites (each
  benchmark validated on its own, a broken one skipped with its reason).
- ``units``: documents as retrieval units (segmented as in generation); evidence spans -> units.
- ``scanning``: the scanner's single-pass and sliding-window scoring of a document.
- ``retrievers``: scanner, bm25, dense, chunk-level baselines, random, oracle behind one interface.
- ``metrics``: recall@k, nDCG@k, MRR, answer containment, token F1, bootstrap intervals.
- ``llm_protocol``: top-k units -> LLM answer -> LLM judge, through the project's LLM client.
- ``report``: tables (CSV, JSON, Markdown) and plots.
- ``plan``: what a run will do, said before it starts: metrics per benchmark, skips, the work.
- ``finished``: each benchmark's results written as it finishes, read back when a run resumes.
- ``run``: ``EvalConfig`` and ``run_evaluation``, which ties them together.
"""
