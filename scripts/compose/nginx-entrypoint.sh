#!/bin/sh
# The stand-in nginx image's entrypoint: what the official image's /docker-entrypoint.sh
# does for deploy/docker-compose.yml, and nothing more. When the command is nginx, every
# /etc/nginx/templates/**/*.template is rendered with envsubst into NGINX_ENVSUBST_OUTPUT_DIR
# (default /etc/nginx/conf.d), substituting only the variables whose names match
# NGINX_ENVSUBST_FILTER (a regular expression; empty matches every name). Then the command
# runs as PID 1.
set -eu
if [ "${1:-}" = nginx ] || [ "${1:-}" = nginx-debug ]; then
    templates="${NGINX_ENVSUBST_TEMPLATE_DIR:-/etc/nginx/templates}"
    suffix="${NGINX_ENVSUBST_TEMPLATE_SUFFIX:-.template}"
    out="${NGINX_ENVSUBST_OUTPUT_DIR:-/etc/nginx/conf.d}"
    filter="${NGINX_ENVSUBST_FILTER:-}"
    # envsubst's SHELL-FORMAT argument: '${A} ${B} ...' for each defined, matching name.
    names=$(awk -v filter="$filter" \
        'END { for (name in ENVIRON) if (name ~ filter) printf "${%s} ", name }' </dev/null)
    if [ -d "$templates" ]; then
        find "$templates" -follow -type f -name "*$suffix" | while read -r template; do
            relative="${template#"$templates/"}"
            mkdir -p "$out/$(dirname "$relative")"
            envsubst "$names" <"$template" >"$out/${relative%"$suffix"}"
            echo "stand-in entrypoint: rendered $template to $out/${relative%"$suffix"}"
        done
    fi
fi
exec "$@"
