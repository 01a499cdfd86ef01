"""Connectors: one module or package per outside system (spool folder, Altinn, Graph...).

The package rule: a connector imports only ``gateway.ports`` and its own vendor
library, never the rest of the core. That keeps the seam in one file, lets the core
load a connector lazily from configuration without dragging in every vendor
library, and means a connector can be read, tested and replaced on its own. Vendor
errors are translated at the boundary into ``TransientError`` or ``PermanentError``;
nothing else crosses it.
"""
