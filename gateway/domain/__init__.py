"""Pure rules of the domain: no I/O, no database, no clock of their own.

Nothing in this package imports from the rest of the gateway, so every rule can be
tested exhaustively (property-based tests) and read without knowing the plumbing.
"""
