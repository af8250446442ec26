"""The ``drillbit`` command line: the top layer, which may import everything below it and which nothing imports.

``cli.app`` holds the typer app and ``main()``; each command group lives in its own module. Commands that only read
(help, list, calendar, runs, report, score, sandbox, cleanup) import neither Prefect nor a flow; those that run
flows (run, deploy, verify, demo) import them inside the command."""
