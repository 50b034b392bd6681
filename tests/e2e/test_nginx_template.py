"""The one Nginx template: rendered locally it is a configuration Nginx accepts, rendered for
compose it is what the official image's template step produces, and the directives the
edge's behaviour rests on are there."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from devstack.errors import DevstackError
from devstack.nginx import find_nginx
from devstack.nginx_config import (
    TEMPLATE_PATH,
    check_value,
    local_variables,
    render,
    template_variables,
)
from tests.e2e.compose import ENVSUBST_SETTINGS, load_compose

TEMPLATE = TEMPLATE_PATH.read_text()


def _local(prefix: Path) -> dict[str, str]:
    return local_variables(
        listen="127.0.0.1:8080", api_servers=("127.0.0.1:8001", "127.0.0.1:8002"), prefix=prefix
    )


def _directives(text: str, name: str) -> list[str]:
    """Every argument string of directive ``name`` outside comments."""
    lines = (line.split("#", 1)[0].strip() for line in text.splitlines())
    return [line[len(name) :].strip(" ;") for line in lines if line.startswith(name + " ")]


def test_local_render_fills_every_variable(tmp_path: Path) -> None:
    text = render(TEMPLATE, _local(tmp_path))
    assert "${" not in text
    assert "listen 127.0.0.1:8080;" in text
    assert f"pid {tmp_path / 'nginx.pid'};" in text


def test_nginx_accepts_the_local_render(tmp_path: Path) -> None:
    try:
        binary = find_nginx()
    except DevstackError as exc:
        pytest.skip(str(exc))
    (tmp_path / "temp").mkdir()
    config = tmp_path / "nginx.conf"
    config.write_text(render(TEMPLATE, _local(tmp_path)))
    result = subprocess.run(
        [binary, "-t", "-p", f"{tmp_path}/", "-c", str(config), "-e", "stderr"],
        capture_output=True,
        text=True,
        timeout=10,
        check=False,
    )
    assert result.returncode == 0, result.stderr


def test_render_refuses_missing_unused_and_unsafe_values(tmp_path: Path) -> None:
    variables = _local(tmp_path)
    with pytest.raises(ValueError, match="NGINX_LISTEN"):
        render(TEMPLATE, {k: v for k, v in variables.items() if k != "NGINX_LISTEN"})
    with pytest.raises(ValueError, match="NGINX_EXTRA"):
        render(TEMPLATE, {**variables, "NGINX_EXTRA": "x"})
    with pytest.raises(ValueError, match="NGINX_API_1"):
        render(TEMPLATE, {**variables, "NGINX_API_1": "a:1; include /etc/passwd"})
    for bad in ("", "a b", "x;", "{", "$x", "'q'"):
        with pytest.raises(ValueError):
            check_value("V", bad)


def test_compose_render_matches_the_images_template_step() -> None:
    """The official image substitutes the variables matching NGINX_ENVSUBST_FILTER that
    are defined (envsubst in some versions, a perl one-liner in others); ours must give
    the same text for compose's values."""
    nginx = load_compose()["services"]["nginx"]
    env = {k: str(v) for k, v in nginx["environment"].items()}
    variables = {k: v for k, v in env.items() if k not in ENVSUBST_SETTINGS}
    ours = render(TEMPLATE, variables)

    envsubst = shutil.which("envsubst")
    if envsubst is not None:
        shell_format = " ".join(f"${{{name}}}" for name in env if name.startswith("NGINX_"))
        result = subprocess.run(
            [envsubst, shell_format],
            input=TEMPLATE,
            env=env,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        )
        assert result.stdout == ours
    prefix = re.escape(env["NGINX_ENVSUBST_FILTER"])
    perl_style = re.sub(rf"\$(\{{)?({prefix}\w*)(?(1)\}})", lambda m: env.get(m[2], m[0]), TEMPLATE)
    assert perl_style == ours
    assert env["NGINX_ENVSUBST_OUTPUT_DIR"] == "/etc/nginx"
    assert nginx["command"] == ["nginx"], "the template says daemon off; -g would repeat it"


def test_template_variables_are_what_both_sides_fill(tmp_path: Path) -> None:
    nginx_env = set(load_compose()["services"]["nginx"]["environment"]) - ENVSUBST_SETTINGS
    assert template_variables(TEMPLATE) == set(_local(tmp_path)) == nginx_env


def test_retries_never_replay_answers_of_the_api() -> None:
    """429 (over the limit) and 503 (fail closed) are answers, not replica failures."""
    (next_upstream,) = _directives(TEMPLATE, "proxy_next_upstream")
    conditions = set(next_upstream.split())
    assert {"error", "timeout", "http_502"} <= conditions
    assert not conditions & {"http_429", "http_503", "non_idempotent"}
    assert _directives(TEMPLATE, "proxy_next_upstream_tries") == ["2"]
    assert _directives(TEMPLATE, "proxy_intercept_errors") in ([], ["off"])


def test_client_address_headers_are_overwritten() -> None:
    headers = _directives(TEMPLATE, "proxy_set_header")
    assert "X-Real-IP $remote_addr" in headers
    assert "X-Forwarded-For $remote_addr" in headers
    assert 'Forwarded ""' in headers
    assert 'Connection ""' in headers
    assert _directives(TEMPLATE, "proxy_http_version") == ["1.1"]
    assert not any("$proxy_add_x_forwarded_for" in value for value in headers)
