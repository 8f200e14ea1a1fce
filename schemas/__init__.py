"""Data contracts: Arrow schemas, typed records and validation for every linkscan artifact."""
from linkscan.schemas.artifacts import SCHEMA_VERSIONS, SCHEMAS, schema_for
from linkscan.schemas.records import (
    Chunk,
    Document,
    Example,
    Link,
    Prediction,
    records_to_table,
    table_to_records,
)
from linkscan.schemas.validation import SchemaError, check_schema, validate_table

__all__ = [
    "SCHEMA_VERSIONS", "SCHEMAS", "schema_for", "Chunk", "Document", "Example", "Link", "Prediction",
    "records_to_table", "table_to_records", "SchemaError", "check_schema", "validate_table",
]
