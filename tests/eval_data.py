"""Shared inputs of the evaluation tests: a short contract as retrieval units, and a scripted LLM
(answers and verdicts) for the answer-and-judge protocol."""

import re

from evaluation.metrics import normalize_answer

CONTRACT_UNITS = [
    "The supplier shall deliver the goods within thirty days of the order. ",
    "Payment is due on receipt of the invoice, without any deduction. ",
    "This agreement is governed by the laws of the State of Delaware. ",
    "Either party may terminate the agreement with ninety days written notice. ",
    "The term of this agreement is five years from the effective date. ",
    "Invoices are sent electronically to the accounts payable department. ",
]


# -- the LLM protocol: scripted answers and verdicts -----------------------------------------

SCRIPTED_ANSWERS = {
    "when did season 2 of handmaid's tale start": "April 25, 2018",  # right
    "how many episodes in season 1 of handmades tale": "12",  # wrong
    "how many episodes of season two of the handmaids tale are there": "13",  # the judge mumbles
    "How to get additional knowledge for entities?": "B. Supplementing image information.",  # right option
}


def _field(text: str, name: str) -> str:
    return re.search(rf"^{name}: (.*)$", text, re.MULTILINE).group(1)


def scripted_llm(request: dict) -> str:
    text = request["messages"][-1]["content"]
    question = _field(text, "Question")
    if "Excerpts:" in text:
        return f"REASON: the excerpts say so.\nANSWER: {SCRIPTED_ANSWERS[question]}\n"
    if question.startswith("how many episodes of season two"):
        return "It is hard to say."
    truth, prediction = _field(text, "Ground truth"), _field(text, "Prediction")
    if "multiple-choice" in text:
        same = truth.split(":")[0] == prediction[:1]
    else:
        same = normalize_answer(truth) == normalize_answer(prediction)
    return f"The prediction {'matches' if same else 'differs'}.\nDECISION: {'YES' if same else 'NO'}"
