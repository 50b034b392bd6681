"""``python -m api``: run the demo service (see ``api.main.run``)."""

from api.main import run

run()
