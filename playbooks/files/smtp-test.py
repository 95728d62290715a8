"""Send one test e-mail with the app's own SMTP_* settings, as the app would.

Run on the host by playbooks/smtp-test.yml under systemd-run with the app's user and
environment files, so it proves what the app will see: the relay answers, TLS verifies, the
login (SMTP_USER / SMTP_PASS) is accepted. Prints one line; never prints the password.
"""

import os
import smtplib
import socket
import ssl
import sys
from email.message import EmailMessage
from email.utils import formatdate, make_msgid

TIMEOUT = 20


def main() -> int:
    env = os.environ
    host, port = env.get("SMTP_HOST", ""), int(env.get("SMTP_PORT") or 587)
    security = env.get("SMTP_SECURITY", "starttls")
    user, password = env.get("SMTP_USER", ""), env.get("SMTP_PASS", "")
    sender, recipient = env.get("SMTP_FROM", ""), env["BERTH_SMTP_TO"]
    if not host or not sender:
        print("SMTP_HOST and SMTP_FROM must be set (berth_smtp_host, berth_smtp_from)")
        return 2
    context = ssl.create_default_context(cafile=env.get("SMTP_CA_FILE") or None)

    msg = EmailMessage()
    msg["From"], msg["To"] = sender, recipient
    msg["Subject"] = f"berth: test e-mail from {socket.getfqdn()}"
    msg["Date"], msg["Message-ID"] = formatdate(localtime=True), make_msgid()
    msg.set_content(f"Sent by playbooks/smtp-test.yml through {host}:{port} ({security}).\n")

    try:
        if security == "tls":
            smtp = smtplib.SMTP_SSL(host, port, timeout=TIMEOUT, context=context)
        else:
            smtp = smtplib.SMTP(host, port, timeout=TIMEOUT)
        with smtp:
            if security == "starttls":
                smtp.starttls(context=context)
            if user:
                smtp.login(user, password)
            smtp.send_message(msg)
    except (OSError, smtplib.SMTPException) as err:
        # the message names the relay and the step; smtplib never puts the password in it
        print(f"sending through {host}:{port} ({security}) failed: {type(err).__name__}: {err}")
        return 1
    login = f", logged in as {user}" if user else ""
    print(f"sent to {recipient} through {host}:{port} ({security}{login})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
