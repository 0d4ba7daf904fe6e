#!/bin/sh
# Render the Alertmanager configuration from the environment (Alertmanager
# itself reads none): render.sh TEMPLATE OUTPUT
#   ALERT_EMAIL_TO, ALERT_SMTP_SMARTHOST (host:port), ALERT_SMTP_FROM   required
#   ALERT_SMTP_USERNAME                                                 optional (no SMTP auth when empty)
#   ALERTMANAGER_SECRETS_DIR                                            default /run/secrets
#   SLACK_WEBHOOK_URL, PAGERDUTY_ROUTING_KEY, ALERT_SMTP_PASSWORD       secrets: when set, written to
#     $ALERTMANAGER_SECRETS_DIR/{slack_webhook_url,pagerduty_routing_key,smtp_password} (mode 600);
#     when unset, those files must already be there (container secrets, a vault agent, ...).
# POSIX sh and sed only, so it runs in the Alertmanager image (busybox).
set -eu

template=${1:?usage: render.sh TEMPLATE OUTPUT}
output=${2:?usage: render.sh TEMPLATE OUTPUT}
: "${ALERT_EMAIL_TO:?ALERT_EMAIL_TO is required (where alert mail goes)}"
: "${ALERT_SMTP_SMARTHOST:?ALERT_SMTP_SMARTHOST is required (host:port of the mail relay)}"
: "${ALERT_SMTP_FROM:?ALERT_SMTP_FROM is required (sender of alert mail)}"
ALERT_SMTP_USERNAME=${ALERT_SMTP_USERNAME:-}
ALERTMANAGER_SECRETS_DIR=${ALERTMANAGER_SECRETS_DIR:-/run/secrets}

# The values land inside double-quoted YAML strings: refuse what would end or escape one.
newline='
'
for name in ALERT_EMAIL_TO ALERT_SMTP_SMARTHOST ALERT_SMTP_FROM ALERT_SMTP_USERNAME ALERTMANAGER_SECRETS_DIR; do
    eval "value=\${$name}"
    case $value in
        *'"'* | *'\'* | *"$newline"*)
            echo "render.sh: $name must not contain a quote, a backslash or a newline" >&2
            exit 2
            ;;
    esac
done

umask 077
mkdir -p "$ALERTMANAGER_SECRETS_DIR"
write_secret() {  # write_secret FILE VALUE: only when the variable was set
    printf '%s' "$2" >"$ALERTMANAGER_SECRETS_DIR/$1"
}
if [ -n "${SLACK_WEBHOOK_URL:-}" ]; then write_secret slack_webhook_url "$SLACK_WEBHOOK_URL"; fi
if [ -n "${PAGERDUTY_ROUTING_KEY:-}" ]; then write_secret pagerduty_routing_key "$PAGERDUTY_ROUTING_KEY"; fi
if [ -n "${ALERT_SMTP_PASSWORD:-}" ]; then write_secret smtp_password "$ALERT_SMTP_PASSWORD"; fi

escape() {  # for the replacement side of sed's s|||: backslash, ampersand, the delimiter
    printf '%s' "$1" | sed -e 's/[\\&|]/\\&/g'
}
umask 022
sed -e "s|\${ALERT_EMAIL_TO}|$(escape "$ALERT_EMAIL_TO")|g" \
    -e "s|\${ALERT_SMTP_SMARTHOST}|$(escape "$ALERT_SMTP_SMARTHOST")|g" \
    -e "s|\${ALERT_SMTP_FROM}|$(escape "$ALERT_SMTP_FROM")|g" \
    -e "s|\${ALERT_SMTP_USERNAME}|$(escape "$ALERT_SMTP_USERNAME")|g" \
    -e "s|\${ALERTMANAGER_SECRETS_DIR}|$(escape "$ALERTMANAGER_SECRETS_DIR")|g" \
    "$template" >"$output.tmp"
if grep -n '\${' "$output.tmp" >&2; then
    echo "render.sh: placeholders left unfilled in $template (above)" >&2
    rm -f "$output.tmp"
    exit 2
fi
mv "$output.tmp" "$output"
