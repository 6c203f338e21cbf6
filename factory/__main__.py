"""`python -m factory` (and `torchrun ... -m factory search ...`): the `factory` command."""

from factory.cli.main import run

if __name__ == "__main__":
    run()
