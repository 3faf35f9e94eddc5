"""How one alert leaves the gateway on each channel: a Slack incoming webhook, a generic JSON webhook,
an email over SMTP. Plain blocking calls with timeouts, made only by the alert sender's thread."""

from __future__ import annotations

import json
import os
import smtplib
import ssl
import urllib.error
import urllib.request
from email.message import EmailMessage
from typing import Any

from core.config import EmailAlerts

TIMEOUT_SECONDS = 10.0
# What a generic webhook receives: the alert row's own facts, not its delivery bookkeeping.
WEBHOOK_FIELDS = ("id", "scope", "scope_id", "budget", "unit", "threshold", "cap", "spent", "period_start",
                  "resets_at", "message")


class DeliveryError(Exception):
    """A channel refused or could not take the alert; the message never holds a URL or password
    (a Slack webhook URL is itself a credential)."""


def post_json(url: str, payload: dict[str, Any], timeout: float = TIMEOUT_SECONDS) -> None:
    request = urllib.request.Request(
        url, data=json.dumps(payload).encode(), method="POST",
        headers={"Content-Type": "application/json", "User-Agent": "tapgate-alerts"},
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            response.read()
    except urllib.error.HTTPError as e:
        raise DeliveryError(f"HTTP {e.code} {e.reason}") from None
    except (urllib.error.URLError, OSError) as e:
        raise DeliveryError(f"cannot reach the receiver: {getattr(e, 'reason', e)}") from None


def send_slack(url: str, alert: dict[str, Any]) -> None:
    """Slack incoming webhooks take {"text": ...} and answer 200 "ok"."""
    post_json(url, {"text": alert["message"]})


def send_webhook(url: str, alert: dict[str, Any]) -> None:
    post_json(url, {name: alert.get(name) for name in WEBHOOK_FIELDS})


def send_email(email: EmailAlerts, alert: dict[str, Any], subject: str) -> None:
    message = EmailMessage()
    message["From"] = email.sender
    message["To"] = ", ".join(email.to)
    message["Subject"] = subject
    message.set_content(alert["message"] + "\n\n" + "\n".join(
        f"{name}: {alert.get(name)}" for name in WEBHOOK_FIELDS if name != "message"
    ) + "\n")
    password = None
    if email.username:
        password = os.environ.get(email.password_env or "")
        if password is None:
            raise DeliveryError(f"email: the password variable {email.password_env!r} is not set")
    try:
        with smtplib.SMTP(email.smtp_host, email.smtp_port, timeout=TIMEOUT_SECONDS) as smtp:
            if email.starttls:
                smtp.starttls(context=ssl.create_default_context())
            if email.username:
                smtp.login(email.username, password)
            smtp.send_message(message)
    except smtplib.SMTPException as e:
        raise DeliveryError(f"SMTP: {type(e).__name__}: {e}") from None
    except OSError as e:
        raise DeliveryError(f"cannot reach {email.smtp_host}:{email.smtp_port}: {e}") from None
