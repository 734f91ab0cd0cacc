"""The `jobvisor` command line: `main.py` builds the parser from command modules."""
