"""``python -m linkscan``: the ``linkscan`` command."""
from linkscan.flows.cli import main

if __name__ == "__main__":
    main()
