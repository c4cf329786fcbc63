"""Alert emails (Bucardo's default_email_*): sent when a sync starts failing and when it recovers."""

from __future__ import annotations

import logging
import socket

log = logging.getLogger("pgrepl.alert")


def send(settings: dict, subject: str, body: str) -> bool:
    """Sends one email when `default_email_to` is set; never raises (an alert must not stop replication)."""
    recipients = [a.strip() for a in settings.get("default_email_to", "").split(",") if a.strip()]
    if not recipients:
        return False
    # imported here, not at the top: a worker that never mails does not carry the email package
    import smtplib
    from email.message import EmailMessage
    msg = EmailMessage()
    msg["From"] = settings.get("default_email_from") or f"pgrepl@{socket.getfqdn()}"
    msg["To"] = ", ".join(recipients)
    msg["Subject"] = subject
    msg.set_content(body)
    try:
        with smtplib.SMTP(settings.get("default_email_host") or "localhost",
                          int(settings.get("default_email_port") or 25), timeout=10) as smtp:
            smtp.send_message(msg)
        return True
    except (OSError, smtplib.SMTPException) as e:
        log.warning("could not send alert email to %s: %s", msg["To"], e)
        return False
