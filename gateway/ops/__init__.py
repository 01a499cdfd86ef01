"""Running the gateway: the daemon (scheduler, signals, leases), systemd notification,
first-time set-up and the demo."""
