#!/bin/sh
# Tests of the Alertmanager configuration (make alerts-test): render it with
# example values, `amtool check-config`, then route alerts by severity with
# `amtool config routes test`, and check what render.sh refuses.
# Needs amtool (Debian package prometheus-alertmanager).
set -eu

here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
failures=0
fail() {
    echo "FAIL: $*" >&2
    failures=$((failures + 1))
}

example_env() {  # run "$@" with the example deployment's environment
    env ALERT_EMAIL_TO=ops@example.com ALERT_SMTP_SMARTHOST=mail.example.com:587 \
        ALERT_SMTP_FROM=alertmanager@example.com ALERT_SMTP_USERNAME=alertmanager \
        ALERTMANAGER_SECRETS_DIR="$work/secrets" \
        SLACK_WEBHOOK_URL='https://hooks.slack.com/services/T000/B000/x&y|z' \
        PAGERDUTY_ROUTING_KEY=example-routing-key ALERT_SMTP_PASSWORD='p@ss "word"' "$@"
}

config=$work/alertmanager.yml
example_env "$here/render.sh" "$here/alertmanager.yml" "$config"
amtool check-config "$config"

# Secrets go to their files exactly as given, readable by the owner only.
[ "$(cat "$work/secrets/slack_webhook_url")" = 'https://hooks.slack.com/services/T000/B000/x&y|z' ] ||
    fail "slack_webhook_url holds something else"
[ "$(cat "$work/secrets/pagerduty_routing_key")" = example-routing-key ] || fail "pagerduty_routing_key"
[ "$(cat "$work/secrets/smtp_password")" = 'p@ss "word"' ] || fail "smtp_password"
[ "$(find "$work/secrets" -type f -perm -044 | wc -l)" -eq 0 ] || fail "a secret file is readable by others"
grep -q 'to: "ops@example.com"' "$config" || fail "the email receiver does not go to ALERT_EMAIL_TO"
grep -q "example-routing-key" "$config" && fail "a secret was written into the configuration"

routes() {  # routes EXPECTED LABEL=VALUE...: the receivers an alert with these labels reaches, in order
    expected=$1
    shift
    if ! amtool config routes test --config.file="$config" --verify.receivers="$expected" "$@" >/dev/null 2>&1; then
        got=$(amtool config routes test --config.file="$config" "$@" 2>/dev/null || true)
        fail "alert {$*} should reach $expected, reaches $got"
    fi
}
routes pagerduty,slack,email alertname=PipelineRunFailed severity=critical kind=pipelinerun status=failed
routes pagerduty,slack,email alertname=NoQueueWorker severity=critical
routes slack,email alertname=ImportSlaBreached severity=warning market=BIST
routes slack,email alertname=RunFailed severity=warning kind=correctionrun status=failed
routes email alertname=Informational severity=info
routes email alertname=WithoutSeverity

refuses() {  # refuses MESSAGE VAR=VALUE...: render.sh exits non-zero naming the problem
    message=$1
    shift
    if example_env "$@" "$here/render.sh" "$here/alertmanager.yml" "$work/refused.yml" 2>"$work/err"; then
        fail "render.sh accepted $*"
    elif ! grep -q "$message" "$work/err"; then
        fail "render.sh refused $* without saying '$message': $(cat "$work/err")"
    fi
    [ ! -e "$work/refused.yml" ] || fail "render.sh left a configuration behind after refusing $*"
}
refuses "ALERT_EMAIL_TO is required" env -u ALERT_EMAIL_TO
refuses "ALERT_SMTP_SMARTHOST is required" ALERT_SMTP_SMARTHOST=
refuses "ALERT_SMTP_FROM must not contain a quote" 'ALERT_SMTP_FROM=Ops "team" <ops@example.com>'

if [ "$failures" -ne 0 ]; then
    echo "$failures Alertmanager test(s) failed" >&2
    exit 1
fi
echo "Alertmanager configuration: routes and rendering OK"
