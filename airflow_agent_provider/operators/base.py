"""What the provider's operators are: pipeline stages with a typed name, some of them asking Claude.

A new operator subclasses ``StageOperator`` and names its stage once, ``stage = "transform"``;
results, the report and alerts read it from there. One that asks Claude subclasses
``ClaudeStageOperator`` instead and gets the five Claude settings, so a budget in ``default_args``
binds it like every other judgment point of the run. Kept light: DAG files import this module.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from airflow.sdk import BaseOperator

from airflow_agent_provider.operators._lineage import LineageMixin

if TYPE_CHECKING:
    import jinja2
    from airflow.sdk import Context

    from airflow_agent_provider.agents.claude import Claude
    from airflow_agent_provider.contracts.results import StageName

DEFAULT_CLAUDE_CONN_ID = "anthropic_default"
DEFAULT_TIMEOUT_S = 60.0  # the wall-clock bound of one decision, retries included
DECISION_KEY = "decision"  # the XCom key of a routing decision (``contracts.RouteDecision``)


class StageOperator(BaseOperator, LineageMixin):
    """One stage of the pipeline; ``stage`` names it in stage results, the run's report and alerts.

    Every stage reports its lineage to OpenLineage (``LineageMixin``) when that provider is installed.
    The mixin comes after ``BaseOperator``: Airflow's operator metaclass compares ``__init__`` with the
    first base's, and a mixin first made it re-wrap ``BaseOperator.__init__``, whose ``inlets=None``
    default then broke mapped tasks (``partial().expand()``).
    """

    stage: ClassVar[StageName]
    _skipped_upstream: frozenset[str] = frozenset()

    def render_template_fields(self, context: Context, jinja_env: jinja2.Environment | None = None) -> None:
        """Render as Airflow does, except that the output of a skipped upstream task is ``None``, not pulled.

        A route the branch did not take is skipped and pushes nothing; that is expected. Pulling its
        output anyway (``upstream=[extract.output, quarantine.output]``) made Airflow log ``XCom not
        found`` as an error in every healthy run. The states of the upstream tasks are asked for once.
        """
        self._skipped_upstream = _skipped_upstream(self, context)
        try:
            super().render_template_fields(context, jinja_env)
        finally:
            self._skipped_upstream = frozenset()

    def render_template(
        self,
        content: Any,
        context: Context,
        jinja_env: jinja2.Environment | None = None,
        seen_oids: set[int] | None = None,
    ) -> Any:
        if self._skipped_upstream and _output_task_id(content) in self._skipped_upstream:
            return None  # what pulling the missing XCom would have given, without the error log
        return super().render_template(content, context, jinja_env, seen_oids)


class ClaudeStageOperator(StageOperator):
    """A stage with a judgment point: it may ask Claude, within the run's budget.

    :param model: the Claude model (default: the connection's ``model`` extra, else the judgment
        point's tier: ``claude-haiku-4-5`` for diagnosis, ``claude-sonnet-4-6`` otherwise). Templated.
    :param claude_conn_id: an ``anthropic`` connection (API key in the password, base URL in the host).
        Templated.
    :param timeout_s: the wall-clock bound of one decision, retries included.
    :param max_cost_usd: the run's model budget in USD; what earlier tasks of the run spent counts.
    :param max_model_calls: the run's budget in model calls; what earlier tasks of the run made counts.
    """

    claude_template_fields: ClassVar[tuple[str, ...]] = ("model", "claude_conn_id")

    def __init__(
        self,
        *,
        model: str | None = None,
        claude_conn_id: str = DEFAULT_CLAUDE_CONN_ID,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        max_cost_usd: float | None = None,
        max_model_calls: int | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.model = model
        self.claude_conn_id = claude_conn_id
        self.timeout_s = timeout_s
        self.max_cost_usd = max_cost_usd
        self.max_model_calls = max_model_calls

    def claude(self, context: Context) -> Claude:
        """Claude for this task: the connection's client, the model, the bounds and the run's budget."""
        from airflow_agent_provider.operators._claude import connect

        return connect(
            context,
            model=self.model,
            claude_conn_id=self.claude_conn_id,
            timeout_s=self.timeout_s,
            max_cost_usd=self.max_cost_usd,
            max_model_calls=self.max_model_calls,
        )


def stage_of(task: Any) -> StageName | None:
    """The stage a task runs, or None when it is no pipeline stage (a ``@task``, an ``EmptyOperator``)."""
    cls = getattr(task, "operator_class", None)  # a mapped task: the class it maps
    if not isinstance(cls, type):
        cls = type(task)
    return getattr(cls, "stage", None) if issubclass(cls, StageOperator) else None


def _output_task_id(content: Any) -> str | None:
    """The task whose return value ``content`` is (``task.output``), else None."""
    from airflow.sdk.definitions.xcom_arg import PlainXComArg

    if isinstance(content, PlainXComArg) and content.key == "return_value":
        return str(content.operator.task_id)
    return None


def _skipped_upstream(task: StageOperator, context: Context) -> frozenset[str]:
    """The upstream tasks of this run that were skipped; empty when the states cannot be asked for, or
    need not be: under ``all_success`` (the default) a task whose upstream was skipped does not run."""
    ids = sorted(task.upstream_task_ids)
    ti = context.get("ti")
    if not ids or ti is None or not hasattr(ti, "get_task_states") or task.trigger_rule == "all_success":
        return frozenset()
    try:
        states = ti.get_task_states(dag_id=ti.dag_id, task_ids=ids, run_ids=[context["run_id"]])
    except Exception as err:  # an old API server: pull as Airflow does
        task.log.debug("Could not read the upstream task states: %s", err)
        return frozenset()
    return frozenset(tid for tid, state in states.get(context["run_id"], {}).items() if state == "skipped")
