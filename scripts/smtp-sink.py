#!/usr/bin/env python3
"""A real SMTP server for the integration tests (tests/it/common/smtp.rs starts one per test).

Usage: smtp-sink.py DIR

Listens on 127.0.0.1 on a free port chosen by the operating system, prints `PORT <n>` on
stdout once it accepts connections, and writes each message it receives to DIR as
`<seq>.json` (written to a temporary name first and renamed, so a reader never sees half a
file):

    {"to": [envelope recipients], "mail_from": envelope sender, "from": From header,
     "subject": decoded Subject, "text": decoded text/plain body,
     "transfer_encoding": Content-Transfer-Encoding of that part}

(line ends in the text are turned from CRLF back into LF, and trailing ones dropped).

Headers and body are decoded with the `email` standard library (RFC 2047 words,
quoted-printable, base64). The server exits when its standard input closes, so it does not
outlive a test process that died without killing it.
"""

import asyncio
import email
import email.policy
import itertools
import json
import os
import sys
import threading

try:
    from aiosmtpd.smtp import SMTP
except ImportError:
    print(
        "smtp-sink: aiosmtpd is required: python3 -m pip install aiosmtpd "
        "(scripts/test installs it)",
        file=sys.stderr,
    )
    sys.exit(3)


def text_of(part):
    if part is None:
        return ""
    # SMTP carries CRLF line ends; the tests compare with the LF text they sent. Trailing
    # line ends are framing, not text: lettre ends every body with CRLF and then writes
    # CRLF "." CRLF, so a 7bit or quoted-printable body arrives with one or two extra.
    return part.get_content().replace("\r\n", "\n").rstrip("\n")


class JsonDirHandler:
    def __init__(self, directory):
        self.directory = directory
        self.seq = itertools.count(1)

    async def handle_DATA(self, server, session, envelope):
        message = email.message_from_bytes(envelope.original_content, policy=email.policy.default)
        part = message.get_body(preferencelist=("plain",))
        record = {
            "to": list(envelope.rcpt_tos),
            "mail_from": envelope.mail_from,
            "from": str(message.get("From", "")),
            "subject": str(message.get("Subject", "")),
            "text": text_of(part),
            "transfer_encoding": str(
                part.get("Content-Transfer-Encoding", "7bit") if part is not None else ""
            ).lower(),
        }
        name = f"{next(self.seq):06d}.json"
        tmp = os.path.join(self.directory, "." + name + ".tmp")
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(record, f, ensure_ascii=False)
        os.replace(tmp, os.path.join(self.directory, name))
        return "250 Message accepted for delivery"


def exit_when_stdin_closes():
    # The parent keeps our stdin open; EOF means it is gone.
    sys.stdin.buffer.read()
    os._exit(0)


async def main(directory):
    handler = JsonDirHandler(directory)
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: SMTP(handler, hostname="smtp-sink.test"), host="127.0.0.1", port=0
    )
    port = server.sockets[0].getsockname()[1]
    print(f"PORT {port}", flush=True)
    threading.Thread(target=exit_when_stdin_closes, daemon=True).start()
    await server.serve_forever()


if __name__ == "__main__":
    if len(sys.argv) != 2:
        print("usage: smtp-sink.py DIR", file=sys.stderr)
        sys.exit(2)
    asyncio.run(main(sys.argv[1]))
