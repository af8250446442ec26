"""``python -m cli``: the same as the ``drillbit`` command."""

from cli.app import main

main()
