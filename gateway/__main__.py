"""``python -m gateway`` is the ``russak`` command."""

from gateway.cli import main

main(prog_name="russak")
