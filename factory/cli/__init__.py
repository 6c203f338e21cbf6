"""The `factory` command line: one module per command group, logic in library functions."""
