"""`python -m byok_platform.worker [options]`: the Celery worker, as `celery -A byok_platform worker [options]` starts
it, without the rest of Celery's command line.

`celery`'s umbrella command imports every subcommand before it runs one (the AMQP shell with click-repl and
prompt_toolkit, pygments for `inspect`, the events monitor...), about 8 MB that a worker would carry for its whole
life and never use. This runs the same `worker` command, with the same options and the same `CELERY_WORKER_*`
environment variables, on this project's app. `celery -A byok_platform ...` still serves everything else (beat,
inspect, purge) and still starts a worker.
"""

import sys

from celery.bin.base import CLIContext
from celery.bin.worker import worker

from byok_platform.celery import app


def main(argv: list[str] | None = None) -> None:
    worker.main(
        args=sys.argv[1:] if argv is None else argv,
        prog_name="python -m byok_platform.worker",
        obj=CLIContext(app=app, no_color=None, workdir=None),
        auto_envvar_prefix="CELERY_WORKER",  # as under `celery` (its prefix CELERY, then the command's name)
    )


if __name__ == "__main__":
    main()
