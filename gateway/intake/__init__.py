"""Intake: a RawMessage becomes a case, a change to a case, a command, or quarantine.

``pipeline`` stores and judges one message in one transaction; ``router`` decides
which door a mail goes through; ``orders`` and ``letters`` take in what the police
send; ``quarantine`` keeps what cannot be used.
"""
