"""Send a message to the demo's sandbox number, as a customer would, while `make demo` runs:

    python3 scripts/sandbox_message.py +5511912345678 "Olá! vm_token:news-0b77e2" [--name "Carla"]

It goes through the real webhook route, signed as the sandbox signs, and the inbox applies it:
open CRM → WhatsApp Conversations (or the lead) to see it. VM_DEMO_DB and VM_DEMO_PORT as for
`make demo`; admin / admin.
"""

import argparse
import os
import sys

from demo_data import Rpc, sandbox_integration, send_inbound


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("phone", help="the customer's number, e.g. +5511912345678")
    parser.add_argument("text", help="what the customer writes")
    parser.add_argument("--name", default=None, help="the customer's WhatsApp name")
    args = parser.parse_args()
    url = f"http://localhost:{os.environ.get('VM_DEMO_PORT', '8069')}"
    try:
        rpc = Rpc(url, os.environ.get("VM_DEMO_DB", "visionmetrics_demo"))
        send_inbound(rpc, sandbox_integration(rpc), args.phone, args.text, args.name)
    except (RuntimeError, OSError) as e:  # DemoError, an RPC error
        sys.exit(f"Could not send it: {e} (is `make demo` running at {url}?)")
    print(f"Sent. It appears in CRM → WhatsApp Conversations within a few seconds ({url}).")


if __name__ == "__main__":
    main()
