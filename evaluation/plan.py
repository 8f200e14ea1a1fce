"""What an evaluation will do, said before it starts: which metrics each benchmark gives with the
chosen options, which benchmarks give none (skipped unless asked for), and an estimate of the work.

Metric groups:
- ``retrieval``: recall@k, hit@k, nDCG@k, MRR; needs gold evidence (questions whose spans map to units).
- ``answer_containment``: open questions with a short answer (not multiple choice).
- ``llm``: the answer-and-judge protocol; needs an LLM endpoint.
A benchmark with none of them (multiple choice without evidence and no LLM) would only cost time.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from linkscan.evaluation.benchmarks import Benchmark, Question, SkippedBenchmark, is_multiple_choice_benchmark

# Estimates of the work from characters alone (segmenting would be the work itself), measured on the
# dev evalsets with the default segmentation: 18.3M characters, 4.41M GPT-NeoX tokens, 106,477 units.
CHARS_PER_TOKEN = 4.15
TOKENS_PER_UNIT = 41.4


@dataclass(frozen=True)
class BenchmarkPlan:
    name: str
    questions: int  # after --max-questions
    documents: int  # the documents those questions are about
    characters: int
    multiple_choice: bool
    with_evidence: int  # questions with gold evidence spans
    open_answers: int  # questions whose answer containment can be measured
    metrics: tuple[str, ...]  # the metric groups that apply (module docstring)
    question_characters: int  # summed over questions: what a scanner reads (each question reads its document)

    @property
    def tokens(self) -> int:
        return round(self.characters / CHARS_PER_TOKEN)

    @property
    def units(self) -> int:
        return round(self.tokens / TOKENS_PER_UNIT)

    @property
    def scanned_tokens(self) -> int:
        return round(self.question_characters / CHARS_PER_TOKEN)


def selected_questions(benchmark: Benchmark, max_questions: int | None) -> list[Question]:
    return benchmark.questions[:max_questions] if max_questions else benchmark.questions


def plan_benchmark(benchmark: Benchmark, max_questions: int | None, llm: bool) -> BenchmarkPlan:
    questions = selected_questions(benchmark, max_questions)
    doc_ids = list(dict.fromkeys(q.doc_id for q in questions))
    multiple_choice = is_multiple_choice_benchmark(benchmark)
    with_evidence = sum(1 for q in questions if q.evidence)
    open_answers = 0 if multiple_choice else sum(1 for q in questions if not q.is_multiple_choice and q.answer_texts())
    metrics = tuple(group for group, applies in (
        ("retrieval", with_evidence > 0), ("answer_containment", open_answers > 0), ("llm", llm)) if applies)
    return BenchmarkPlan(
        name=benchmark.name, questions=len(questions), documents=len(doc_ids),
        characters=sum(len(benchmark.documents[d]) for d in doc_ids), multiple_choice=multiple_choice,
        with_evidence=with_evidence, open_answers=open_answers, metrics=metrics,
        question_characters=sum(len(benchmark.documents[q.doc_id]) for q in questions),
    )


def _unscored(plan: BenchmarkPlan) -> SkippedBenchmark:
    kind = "multiple choice" if plan.multiple_choice else "no short answers"
    return SkippedBenchmark(plan.name, "no_applicable_metric", (
        f"{plan.name}: {kind} and no gold evidence, so with these options no metric applies (only the LLM "
        "protocol could score it: give --llm-base-url and --llm-model); --include-unscored evaluates it anyway"))


def plan_suite(benchmarks: Sequence[Benchmark], max_questions: int | None, llm: bool, include_unscored: bool
               ) -> tuple[list[tuple[Benchmark, BenchmarkPlan]], list[SkippedBenchmark]]:
    """The benchmarks to evaluate with their plans, and those skipped because no metric applies."""
    kept, skipped = [], []
    for benchmark in benchmarks:
        plan = plan_benchmark(benchmark, max_questions, llm)
        if plan.metrics or include_unscored:
            kept.append((benchmark, plan))
        else:
            skipped.append(_unscored(plan))
    return kept, skipped


def _count(value: int) -> str:
    for size, suffix in ((1_000_000, "M"), (1_000, "k")):
        if value >= size:
            return f"{value / size:.1f}{suffix}"
    return str(value)


def _metrics_text(plan: BenchmarkPlan) -> str:
    names = {
        "retrieval": f"retrieval metrics ({plan.with_evidence} questions with gold evidence)",
        "answer_containment": f"answer containment ({plan.open_answers} questions)",
        "llm": "the LLM protocol",
    }
    return ", ".join(names[group] for group in plan.metrics) or "no metric (--include-unscored)"


def describe_plan(plans: Sequence[BenchmarkPlan], skipped: Sequence[SkippedBenchmark], retrievers: Sequence[str],
                  finished: Sequence[str] = ()) -> list[str]:
    """Console lines: per benchmark what it gives, each skip with its reason, and the work left."""
    lines = [f"plan: {len(plans)} benchmark(s) to evaluate with {', '.join(retrievers)}; {len(skipped)} skipped"]
    for plan in plans:
        state = " (finished earlier: resumed from the output folder)" if plan.name in finished else ""
        lines.append(f"  {plan.name}: {plan.questions} questions, {plan.documents} documents, ~{_count(plan.tokens)} tokens: "
                     f"{_metrics_text(plan)}{state}")
    for skip in skipped:
        lines.append(f"  skipped {skip.name} ({skip.reason}): {skip.detail}")
    todo = [p for p in plans if p.name not in finished]
    if todo:
        units, tokens = sum(p.units for p in todo), sum(p.tokens for p in todo)
        line = (f"work: ~{_count(tokens)} tokens, ~{_count(units)} units in {sum(p.documents for p in todo)} documents "
                f"({sum(p.characters for p in todo):,} characters; estimated at {CHARS_PER_TOKEN} characters per token, "
                f"{TOKENS_PER_UNIT} tokens per unit); bm25 and dense score each document's units once for all its questions")
        if any(r.startswith("scanner:") for r in retrievers):
            line += f"; the scanner reads ~{_count(sum(p.scanned_tokens for p in todo))} tokens (each question reads its whole document)"
        lines.append(line)
    return lines
