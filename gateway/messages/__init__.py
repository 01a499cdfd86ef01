"""Readers for what arrives: the order XML (safe, XSD-checked), bounded MIME mail, and
the small result types intake and the staff commands share. Nothing here touches
the database, so every layer above may use them.

One concept per module:

- ``orders``: ``parse_order`` and the public names of the order reader;
- ``order_model``: ``Order`` and its parts, ``OrderError``, the JSON round trip;
- ``order_reader``: an ``Order`` from a validated tree, the rules the XSD cannot say,
  and the policy for identity numbers outside ``Person/Fodselsnummer``;
- ``xmlsafe``: the hardened parser, schemas, safe messages, byte-level refusals;
- ``xmlcaps``: the streaming pass that bounds a document's shape before the XSD;
- ``identity_text``: finding and masking identity numbers in free text;
- ``mail``: ``parse_mail`` and ``MailContent``;
- ``mail_limits``: the raw pre-scan that bounds a mail before the ``email`` parser;
- ``budget``: the CPU-time budget around each parse;
- ``results``: ``IntakeResult`` and the case tag.
"""
