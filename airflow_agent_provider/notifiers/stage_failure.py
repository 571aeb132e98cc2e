"""``StageFailureNotifier``: one alert per failed stage, to a Slack-compatible webhook and/or e-mail.

Use it as a task callback (``default_args={"on_failure_callback": StageFailureNotifier(...)}``):
task callbacks run on the worker when a task fails for good, not on a failure that will be retried.
Each channel is tried on its own; a channel that fails is logged and never hides the task's error.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from airflow.sdk import BaseNotifier

from airflow_agent_provider.notifiers._alert import StageAlert, build_alert, redact_secrets

if TYPE_CHECKING:
    import requests
    from airflow.sdk.definitions.context import Context

SLACK_WEBHOOK_CONN_TYPE = "slackwebhook"


class WebhookDeliveryError(RuntimeError):
    """The webhook answered with an error or could not be reached (the URL is never in the message)."""


class StageFailureNotifier(BaseNotifier):
    """
    Alert that a stage failed: DAG, run, task, stage, error, top validation issues, route and log link.

    :param webhook_conn_id: connection of a Slack-compatible incoming webhook. A ``slackwebhook``
        connection goes through the Slack provider's ``SlackWebhookHook``; any other type (``http``)
        is a plain JSON POST of ``{"text", "blocks"}`` through the session ``HttpHook`` builds, to its
        base URL (the whole URL in the host, or schema, host and port).
    :param email_to: recipients of the e-mail alert; no e-mail is sent when empty.
    :param smtp_conn_id: SMTP connection for the e-mail (default: ``[email] email_conn_id``, else
        ``smtp_default``).
    :param from_email: sender address (default: the SMTP connection's ``from_email`` extra).
    :param timeout: seconds allowed for the webhook request.
    :param max_error_chars: the error text is cut to this length.
    """

    template_fields: Sequence[str] = ("webhook_conn_id", "email_to", "smtp_conn_id", "from_email")

    def __init__(
        self,
        *,
        webhook_conn_id: str | None = None,
        email_to: str | Iterable[str] | None = None,
        smtp_conn_id: str | None = None,
        from_email: str | None = None,
        timeout: float = 10.0,
        max_error_chars: int = 500,
    ) -> None:
        super().__init__()
        self.webhook_conn_id = webhook_conn_id
        self.email_to = [email_to] if isinstance(email_to, str) else list(email_to or [])
        self.smtp_conn_id = smtp_conn_id
        self.from_email = from_email
        self.timeout = timeout
        self.max_error_chars = max_error_chars

    def notify(self, context: Context) -> None:
        """Send the alert on every configured channel; a failing channel is logged, the others still run."""
        alert = build_alert(context, max_error_chars=self.max_error_chars)
        for name, send in self._channels():
            try:
                send(alert)
            except Exception as err:  # a broken channel must not hide the task's own error
                self.log.error("Stage failure alert via %s failed: %s", name, _safe_reason(err))
            else:
                self.log.info("Stage failure alert for %s.%s sent via %s", alert.dag_id, alert.task_id, name)

    async def async_notify(self, context: Context) -> None:
        """The same alert from the triggerer (deadline alerts): the sync channels run in a thread."""
        await asyncio.to_thread(self.notify, context)

    def _channels(self) -> list[tuple[str, Callable[[StageAlert], None]]]:
        channels: list[tuple[str, Callable[[StageAlert], None]]] = []
        if self.webhook_conn_id:
            channels.append((f"webhook {self.webhook_conn_id!r}", self.send_webhook))
        if self.email_to:
            channels.append((f"e-mail to {len(self.email_to)} recipient(s)", self.send_email))
        return channels

    def send_webhook(self, alert: StageAlert) -> None:
        """Post the alert to the webhook connection (Slack hook for ``slackwebhook``, plain POST otherwise)."""
        from airflow.sdk import BaseHook

        conn_id = str(self.webhook_conn_id)
        conn = BaseHook.get_connection(conn_id)
        if conn.conn_type == SLACK_WEBHOOK_CONN_TYPE:
            from airflow.providers.slack.hooks.slack_webhook import SlackWebhookHook

            slack = SlackWebhookHook(slack_webhook_conn_id=conn_id, timeout=int(self.timeout))
            slack.send(text=alert.text(), blocks=alert.blocks())
            return
        from airflow.providers.http.hooks.http import HttpHook

        hook = HttpHook(method="POST", http_conn_id=conn_id)
        with hook.get_conn() as session:  # the connection's URL, header extras, auth, TLS and proxies
            if not urlsplit(hook.base_url).hostname:
                raise ValueError(f"connection {conn_id!r} has no host: set it to the webhook URL")
            _post_json(session, hook.base_url, {"text": alert.text(), "blocks": alert.blocks()}, self.timeout)

    def send_email(self, alert: StageAlert) -> None:
        """Send the alert through the SMTP provider's hook."""
        from airflow.providers.smtp.hooks.smtp import SmtpHook

        with SmtpHook(smtp_conn_id=self._smtp_conn_id()) as hook:
            hook.send_email_smtp(
                to=self.email_to,
                from_email=self.from_email or hook.from_email or "airflow@localhost",
                subject=alert.subject,
                html_content=alert.html(),
            )

    def _smtp_conn_id(self) -> str:
        if self.smtp_conn_id:
            return self.smtp_conn_id
        from airflow.sdk.configuration import conf

        return str(conf.get("email", "email_conn_id", fallback="smtp_default"))


def _post_json(session: requests.Session, url: str, payload: Mapping[str, Any], timeout: float) -> None:
    import requests

    where = urlsplit(url).netloc.rsplit("@", 1)[-1]
    try:
        response = session.post(url, json=payload, timeout=timeout)
    except requests.RequestException as err:  # its text names the whole URL, a secret: not chained
        raise WebhookDeliveryError(f"webhook at {where} unreachable ({type(err).__name__})") from None
    if response.status_code >= 300:
        raise WebhookDeliveryError(f"webhook at {where} answered HTTP {response.status_code}")


def _safe_reason(err: BaseException) -> str:
    return redact_secrets(f"{type(err).__name__}: {err}")[:300]
