"""The Nginx configuration: ``nginx/nginx.conf.template`` filled in, as pure text.

The template is shared with docker compose, where the official image's envsubst step fills
it. Both fill the same variables the same way: every ``${NGINX_NAME}`` is replaced by its
value and nothing else is touched (Nginx's own ``$variables`` stay as they are).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

__all__ = [
    "TEMPLATE_PATH",
    "check_value",
    "local_variables",
    "render",
    "template_variables",
]

TEMPLATE_PATH = Path(__file__).resolve().parents[1] / "nginx" / "nginx.conf.template"

_VARIABLE = re.compile(r"\$\{(NGINX_[A-Za-z0-9_]+)\}")
_UNBRACED = re.compile(r"\$NGINX_")
# A value becomes one directive argument: anything that could end the directive, open a
# block, start a comment or need quoting is refused rather than escaped.
_FORBIDDEN = re.compile(r"""[\s;{}#"'$\\]""")


def template_variables(text: str) -> frozenset[str]:
    """Names of the ``${NGINX_...}`` variables ``text`` uses."""
    return frozenset(_VARIABLE.findall(text))


def check_value(name: str, value: str) -> str:
    """Return ``value`` if it is safe as one Nginx directive argument.

    Raises ``ValueError`` (naming ``name``) for an empty value or one holding whitespace,
    ``;``, braces, ``#``, quotes, ``$`` or a backslash.
    """
    if not value or _FORBIDDEN.search(value):
        raise ValueError(f"{name} must be one plain Nginx argument, got {value!r}")
    return value


def render(text: str, variables: Mapping[str, str]) -> str:
    """``text`` with every ``${NGINX_...}`` replaced by its value in ``variables``.

    Raises ``ValueError`` when a variable the template uses is missing, when ``variables``
    holds one it does not use (so the two cannot drift apart), when a value fails
    ``check_value``, or when the template spells a variable without braces (envsubst would
    substitute it, we would not).
    """
    used = template_variables(text)
    if missing := used - variables.keys():
        raise ValueError(f"no value for template variable(s) {sorted(missing)}")
    if unused := variables.keys() - used:
        raise ValueError(f"variable(s) {sorted(unused)} not used by the template")
    if _UNBRACED.search(text):
        raise ValueError("the template must write variables as ${NGINX_NAME}")
    for name, value in variables.items():
        check_value(name, value)
    return _VARIABLE.sub(lambda match: variables[match.group(1)], text)


def local_variables(
    *,
    listen: str,
    api_servers: tuple[str, str],
    prefix: Path,
    worker_processes: str = "auto",
    access_log: str = "off",
) -> dict[str, str]:
    """The variables for a local, unprivileged Nginx whose files all live under ``prefix``.

    ``listen`` is ``host:port``; ``api_servers`` the two replicas' ``host:port``;
    ``worker_processes`` ``"auto"`` or a number; ``access_log`` ``"off"`` or a path.
    """
    return {
        "NGINX_LISTEN": listen,
        "NGINX_API_1": api_servers[0],
        "NGINX_API_2": api_servers[1],
        "NGINX_WORKER_PROCESSES": worker_processes,
        "NGINX_PID_FILE": str(prefix / "nginx.pid"),
        "NGINX_TEMP_DIR": str(prefix / "temp"),
        "NGINX_ACCESS_LOG": access_log,
    }
