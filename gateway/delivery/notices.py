"""The notice of non-compliance as it leaves for the prosecuting authority.

The structured XML (``schemas/melding-1.xsd``) is the attachment; a short Norwegian
text names the criminal case reference so a person at the police can act without
tools. The identity number is only in the XML, never in the subject or text.
"""

from __future__ import annotations

from gateway.context import Gateway
from gateway.delivery.notice_xml import Breach, NoticeDocument, SummonsRecord, build_notice_xml
from gateway.models import Case, Notice
from gateway.ports import Attachment, OutboundMessage
from gateway.texts import nb_date, render

BREACH_TEXT = {
    "ikke_mott": "Møtte ikke til samtale i rådgivende enhet for russaker.",
    "prove_ikke_tatt": "Avla ikke rusmiddelprøve som forutsatt.",
}


def build_notice_message(
    gw: Gateway, case: Case, notice: Notice, recipients: tuple[str, ...], key: str
) -> OutboundMessage:
    unit = gw.settings.unit(case.unit.code)
    person = case.person
    assert person is not None and person.national_id is not None
    name = person.full_name
    breaches = tuple(
        Breach(type=b.type, on=b.on, description=BREACH_TEXT[b.type]) for b in notice.breach_facts()
    )
    summonses = tuple(SummonsRecord(on=s.sent_on, channel=s.channel) for s in case.summonses)
    sent = gw.clock.now()
    document = NoticeDocument(
        message_id=notice.message_id,
        order_id=case.order_id,
        case_reference=case.case_reference or case.number,
        unit_name=unit.name,
        unit_org_number=unit.org_number,
        unit_contact_name=unit.contact_name,
        unit_contact_phone=unit.contact_phone,
        unit_contact_email=unit.contact_email,
        national_id=person.national_id,
        person_name=name,
        breaches=breaches,
        summonses=summonses,
        sent=sent,
    )
    xml = build_notice_xml(document)
    subject = f"Melding om manglende oppfyllelse av vilkår – sak {document.case_reference}"
    body = render(
        "notice.txt.j2",
        unit=unit,
        case=case,
        name=name,
        breaches=breaches,
        summonses=summonses,
        document=document,
        sent=nb_date(sent),
    )
    return OutboundMessage(
        key=key,
        kind="notice",
        recipients=recipients,
        subject=subject,
        body=body,
        attachments=(Attachment(f"melding-{notice.message_id}.xml", "application/xml", xml),),
        headers={"X-Russak-MeldingId": notice.message_id},
    )
