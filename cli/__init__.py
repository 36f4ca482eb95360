"""The `glimpse` command line: `main.py` parses and dispatches, `commands/` holds one module
per subcommand (explain, up, models, keys). It builds on glimpse/ (what every part shares)
and on worker/ for explaining on this machine; nothing imports it back."""
