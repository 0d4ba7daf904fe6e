"""Issue, list and revoke API tokens: `api_token issue --user ops --name nightly [--expires 2027-01-01]`,
`api_token list [--user ops]`, `api_token revoke ID`."""

from __future__ import annotations

from typing import Any

from etl.commands import JsonCommand
from etl.errors import DomainError
from etl.models import ApiToken
from etl.services.tokens import api_token_issue, api_token_revoke
from etl.timeparse import moment_parse


class Command(JsonCommand):
    help = "Issue, list or revoke API tokens (Authorization: Bearer <key>)."

    def add_command_arguments(self, parser) -> None:
        sub = parser.add_subparsers(dest="action", required=True)
        issue = sub.add_parser("issue", help="issue a token; prints the key once")
        issue.add_argument("--user", required=True)
        issue.add_argument("--name", required=True)
        issue.add_argument("--expires", help="ISO date or date-time (UTC when naive); default: never")
        listing = sub.add_parser("list", help="list tokens (never their keys)")
        listing.add_argument("--user")
        revoke = sub.add_parser("revoke", help="revoke a token by id")
        revoke.add_argument("token_id", type=int)

    def run(self, **options: Any) -> dict[str, Any]:
        action = options["action"]
        if action == "issue":
            issued = api_token_issue(
                username=options["user"],
                name=options["name"],
                expires_at=moment_parse(options["expires"], field="--expires"),
                issued_by="command",
            )
            return {"id": issued.token.pk, "key": issued.key, "expires_at": issued.token.expires_at}
        if action == "revoke":
            token = ApiToken.objects.filter(pk=options["token_id"]).first()
            if token is None:
                raise DomainError(f"token {options['token_id']}: no such token", code="not_found")
            return {"id": token.pk, "revoked_at": api_token_revoke(token=token).revoked_at}
        tokens = ApiToken.objects.select_related("user")
        if options.get("user"):
            tokens = tokens.filter(user__username=options["user"])
        return {"tokens": [_describe(t) for t in tokens]}

    def render(self, summary: dict[str, Any]) -> None:
        if "tokens" not in summary:
            return super().render(summary)
        for t in summary["tokens"]:
            self.stdout.write(" ".join(f"{k}={v}" for k, v in t.items()))


def _describe(token: ApiToken) -> dict[str, Any]:
    return {
        "id": token.pk,
        "user": token.user.username,
        "name": token.name,
        "prefix": token.prefix,
        "expires_at": token.expires_at,
        "revoked_at": token.revoked_at,
        "last_used_at": token.last_used_at,
    }
