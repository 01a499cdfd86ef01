"""Delivery: the outbox (enqueue, claim, send, retry, dead letters; it knows message
kinds, not cases), one backoff policy, and the notice to the police as it leaves
(Norwegian text plus the XML of ``schemas/melding-1.xsd``)."""
