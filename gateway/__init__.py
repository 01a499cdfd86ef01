"""russak-gateway: police orders in, reminders and non-attendance notices out.

The package is split so that the core never depends on a vendor: ``gateway.ports``
holds every contract a connector implements, ``gateway.domain`` holds the pure rules,
and everything else wires them to the database and the clock.
"""

__version__ = "0.1.0"
