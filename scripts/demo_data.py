"""What `make demo` puts in its database once the server runs: the sandbox number connected (its
QR "scanned"), and a handful of conversations that show each way a lead is found, made as a real
number would make them: signed webhooks through the real route, applied by the inbox, answered
through the outbox (the sandbox then posts sent, delivered and read).

Everything goes through the server's public API (JSON-RPC as admin, HTTP): nothing here writes
to the database. Running it again adds nothing: a conversation that exists is left alone.
"""

import base64
import io
import sys
import time
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from e2e.server import Rpc  # noqa: E402 - JSON-RPC as a user; raises RuntimeError

# (phone, name, text, ad referral): each first message shows one kind of attribution (README,
# "How messages become conversations and leads"); LINK_CUSTOMER's comes through a campaign link.
CUSTOMERS = [
    # the lead's first-touch token, as its tracked link prefilled it
    ("+5511987654321", "Ana Souza", "Oi! Quero saber dos planos 2026 vm_token:gads-7f3a9c", None),
    # no token: the phone number matches Bruno's lead
    ("+5521998761234", "Bruno Lima", "Boa tarde, ainda tem a promoção de Black Friday?", None),
    # nobody knows this number: a new lead
    ("+5531991234567", "Diego Rocha", "Olá, vocês entregam em Belo Horizonte?", None),
    # the first message after a click on a click-to-WhatsApp ad on Instagram
    (
        "+5541998887766",
        "Eduarda Alves",
        "Olá! Vi o anúncio e quero saber mais.",
        {
            "source_id": "120210000000000042",
            "source_url": "https://www.instagram.com/p/C0demo2026/",
            "source_type": "ad",
            "headline": "Planos 2026 com 20% off",
            "body": "Fale com a gente no WhatsApp",
            "media_type": "image",
            "ctwa_clid": "ARAkLkA8rmlFeiCktEJQdemo",
        },
    ),
]
LINK_CUSTOMER = ("+5551997776655", "Fábio Costa")
LINK = {"name": "Flyer da feira - Porto Alegre", "message": "Olá! Peguei o folheto na feira."}
REPLIES = {
    "+5511987654321": "Olá Ana! Os planos 2026 começam em R$ 99/mês. Posso te mandar o catálogo?",
    "+5531991234567": "Oi Diego! Entregamos sim, em até 3 dias úteis. Segue o nosso catálogo.",
}
PHOTO_FOR = "+5531991234567"
BROWSER = "Mozilla/5.0 (X11; Linux x86_64) Chrome/126.0 Safari/537.36"  # clicks of bots are not counted
WAIT = 60  # seconds for the inbox and the outbox to apply what was sent


class DemoError(RuntimeError):
    """Something the demo needs did not happen (RPC errors are RuntimeErrors too)."""


def ref(rpc, xmlid):
    module, name = xmlid.split(".")
    return rpc("ir.model.data", "check_object_reference", module, name)[1]


def sandbox_integration(rpc):
    return ref(rpc, "visionmetrics_whatsapp.vm_whatsapp_integration_demo_sandbox")


def connect(rpc, integration_id):
    """Connect the sandbox number as an admin would: Connect, then the QR's scan URL (what a
    phone does when it scans it)."""
    state = rpc("vm.whatsapp.integration", "read", [integration_id], ["state"])[0]["state"]
    if state == "connected":
        return
    rpc("vm.whatsapp.integration", "action_connect", [integration_id])
    session = rpc(
        "vm.whatsapp.session",
        "search_read",
        [("integration_id", "=", integration_id), ("state", "=", "qr_ready")],
        ["qr_code"],
        order="id desc",
        limit=1,
    )
    if not session:
        raise DemoError("Connect started no sandbox session.")
    requests.post(session[0]["qr_code"], timeout=30).raise_for_status()
    wait(lambda: rpc("vm.whatsapp.integration", "read", [integration_id], ["state"])[0]["state"] == "connected")


def send_inbound(rpc, integration_id, phone, text, name=None, referral=None):
    """A customer's message: a signed webhook through the real route (the integration's own
    action, as its *Send test message* button does); ``referral``: from an ad."""
    rpc(
        "vm.whatsapp.integration",
        "action_send_test_message",
        [integration_id],
        sender=phone,
        text=text,
        name=name,
        referral=referral,
    )


def campaign_link(rpc, integration_id):
    """The demo's campaign link (made once): a flyer's QR code for an Odoo utm campaign."""
    fields = ["message", "token", "short_url"]
    found = rpc("vm.whatsapp.link", "search_read", [("name", "=", LINK["name"])], fields, limit=1)
    if found:
        return found[0]
    campaign = rpc("utm.campaign", "search", [("name", "=", "Feira Porto Alegre 2026")], limit=1) or [
        rpc("utm.campaign", "create", {"name": "Feira Porto Alegre 2026"})
    ]
    medium = rpc("utm.medium", "search", [("name", "=", "Flyer")], limit=1) or [
        rpc("utm.medium", "create", {"name": "Flyer"})
    ]
    link_id = rpc(
        "vm.whatsapp.link",
        "create",
        {**LINK, "integration_id": integration_id, "campaign_id": campaign[0], "medium_id": medium[0]},
    )
    return rpc("vm.whatsapp.link", "read", [link_id], fields)[0]


def conversation_of(rpc, integration_id, phone):
    found = rpc(
        "vm.whatsapp.conversation",
        "search",
        [("integration_id", "=", integration_id), ("contact_phone", "=", phone)],
        limit=1,
    )
    return found[0] if found else None


def catalogue_png():
    """A small picture to send as a photo (drawn here, so the repository holds no image)."""
    from PIL import Image, ImageDraw

    image = Image.new("RGB", (640, 400), (18, 140, 126))
    draw = ImageDraw.Draw(image)
    draw.rectangle((40, 40, 600, 360), outline=(255, 255, 255), width=6)
    draw.text((80, 120), "VisionMetrics", fill=(255, 255, 255))
    draw.text((80, 200), "Catalogo 2026 - planos a partir de R$ 99 por mes", fill=(255, 255, 255))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def populate(url, db):
    """Connect the sandbox and make the demo conversations; returns what was made (text)."""
    rpc = Rpc(url, db)
    integration_id = sandbox_integration(rpc)
    team = rpc("crm.team", "search", [], limit=1)
    if team:
        rpc("vm.whatsapp.integration", "write", [integration_id], {"team_id": team[0]})
    connect(rpc, integration_id)
    link = campaign_link(rpc, integration_id)
    customers = [*CUSTOMERS, (*LINK_CUSTOMER, f"{link['message']} vm_token:{link['token']}", None)]
    made = []
    for phone, name, text, referral in customers:
        if conversation_of(rpc, integration_id, phone):
            continue
        if phone == LINK_CUSTOMER[0]:  # the customer scans the flyer's QR code: a click on the link
            requests.get(link["short_url"], headers={"User-Agent": BROWSER}, allow_redirects=False, timeout=30)
            time.sleep(3)  # ... and types the prefilled message: the report's click-to-message time
        send_inbound(rpc, integration_id, phone, text, name, referral)
        made.append(phone)
    wait(lambda: all(conversation_of(rpc, integration_id, phone) for phone in made))
    for phone in made:
        conversation_id = conversation_of(rpc, integration_id, phone)
        attachment_ids = []
        if phone == PHOTO_FOR:
            attachment_ids = [
                rpc(
                    "ir.attachment",
                    "create",
                    {
                        "name": "catalogo-2026.png",
                        "mimetype": "image/png",
                        "datas": base64.b64encode(catalogue_png()).decode(),
                        "res_model": "vm.whatsapp.conversation",
                        "res_id": conversation_id,
                    },
                )
            ]
        if phone in REPLIES:
            rpc(
                "vm.whatsapp.conversation",
                "action_send_message",
                [conversation_id],
                REPLIES[phone],
                attachment_ids=attachment_ids or None,
            )
    if made:
        # the sandbox posts sent, delivered and read for each reply within a few seconds
        unread = [("direction", "=", "outbound"), ("status", "in", ("pending", "sent", "delivered"))]
        wait(lambda: not rpc("vm.whatsapp.message", "search_count", unread))
    return made


def wait(condition, timeout=WAIT):
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise DemoError(f"Nothing happened within {timeout} s: is the server's cron running? See its log.")
        time.sleep(0.5)
