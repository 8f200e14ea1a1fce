"""Shared inputs of the evaluation tests: a short contract as retrieval units."""

CONTRACT_UNITS = [
    "The supplier shall deliver the goods within thirty days of the order. ",
    "Payment is due on receipt of the invoice, without any deduction. ",
    "This agreement is governed by the laws of the State of Delaware. ",
    "Either party may terminate the agreement with ninety days written notice. ",
    "The term of this agreement is five years from the effective date. ",
    "Invoices are sent electronically to the accounts payable department. ",
]
