"""Column lineage of SQL steps with sqlglot: through earlier steps and ``SELECT *``, down to the inputs."""

from __future__ import annotations

from airflow_agent_provider.contracts import parse_transformations
from airflow_agent_provider.lineage.columns import transform_column_sources

INPUTS = {
    "orders": {"order_id": "integer", "customer_id": "integer", "amount": "float", "day": "string"},
    "customers": {"customer_id": "integer", "name": "string", "region": "string"},
}
STEPS = [
    {"name": "joined", "type": "sql", "sql": "SELECT o.*, c.region FROM orders o JOIN customers c USING (customer_id)"},
    {
        "name": "by_region",
        "type": "sql",
        "sql": "SELECT region, upper(region) AS label, sum(amount) AS total, count(*) AS n FROM joined GROUP BY region",
    },
]


class TestTransformColumnSources:
    def test_each_output_column_reads_the_input_columns_through_earlier_steps(self) -> None:
        found = transform_column_sources(parse_transformations(STEPS), ["region", "label", "total", "n"], INPUTS)

        assert found == {
            "region": [("customers", "region", "IDENTITY")],
            "label": [("customers", "region", "TRANSFORMATION")],
            "total": [("orders", "amount", "AGGREGATION")],
        }  # count(*) reads no column: it has no column lineage

    def test_a_python_step_leaves_the_output_without_column_lineage(self) -> None:
        steps = [*STEPS, {"name": "scored", "type": "python", "callable": "pkg.mod.score"}]
        assert transform_column_sources(parse_transformations(steps), ["region"], INPUTS) == {}

    def test_a_column_sqlglot_cannot_trace_is_left_out(self) -> None:
        steps = parse_transformations([{"name": "x", "type": "sql", "sql": "SELECT amount FROM orders"}])
        assert transform_column_sources(steps, ["amount", "not_a_column"], INPUTS) == {
            "amount": [("orders", "amount", "IDENTITY")]
        }
