from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model

from etl.commands import JsonCommand


class Command(JsonCommand):
    help = "Create (or reset the password of) a superuser for the demo, and print its credentials."

    def add_command_arguments(self, parser) -> None:
        parser.add_argument("--username", default="admin")
        parser.add_argument("--password", required=True)

    def run(self, **options: Any) -> dict[str, Any]:
        User = get_user_model()
        user, created = User.objects.get_or_create(username=options["username"])
        user.is_staff = user.is_superuser = True
        user.set_password(options["password"])
        user.save()
        return {"username": user.username, "password": options["password"], "created": created}

    def render(self, summary: dict[str, Any]) -> None:
        self.stdout.write(f"Admin user: {summary['username']}  password: {summary['password']}")
