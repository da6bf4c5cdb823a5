"""The ``kaudit-elk`` command line (Typer): parses, calls the library, prints. ``main`` holds the app and
the shared options, one module per command family registers its commands, ``console`` owns output and
exit codes."""
