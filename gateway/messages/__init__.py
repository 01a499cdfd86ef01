"""Readers for what arrives: the order XML (safe, XSD-checked), bounded MIME mail, and
the small result types intake and the staff commands share. Nothing here touches
the database, so every layer above may use them."""
