"""The one pagination (etl.api.pagination) over a real table (pipeline_runs):
cursor mode newest first, page mode with the old page/pageSize, bounds, the
response shape and its schema."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from django.urls import path
from drf_spectacular.generators import SchemaGenerator
from rest_framework import generics, serializers
from rest_framework.permissions import AllowAny
from rest_framework.test import APIRequestFactory

from etl.api.pagination import ApiPagination
from etl.models import PipelineRun

pytestmark = pytest.mark.django_db

factory = APIRequestFactory()


class RunRowSerializer(serializers.ModelSerializer):
    class Meta:
        model = PipelineRun
        fields = ["id", "created_at"]


class RunListView(generics.ListAPIView):
    permission_classes = [AllowAny]
    authentication_classes: list = []
    filter_backends: list = []
    serializer_class = RunRowSerializer
    pagination_class = ApiPagination
    queryset = PipelineRun.objects.all()


class RunByIdView(RunListView):
    pagination_ordering = ("id",)


@pytest.fixture
def runs() -> list[int]:
    """25 runs, one minute apart; ids newest first."""
    start = datetime(2024, 1, 1, tzinfo=UTC)
    created = [PipelineRun.objects.create() for _ in range(25)]
    for i, run in enumerate(created):
        PipelineRun.objects.filter(pk=run.pk).update(created_at=start + timedelta(minutes=i))
    return [run.pk for run in reversed(created)]


def get(query: str = "", view=RunListView):
    return view.as_view()(factory.get("/api/runs" + (f"?{query}" if query else "")))


def follow(url: str):
    return RunListView.as_view()(factory.get(url))


def ids(response) -> list[int]:
    return [row["id"] for row in response.data["results"]]


def test_cursor_mode_walks_newest_first_without_gaps_or_repeats(runs):
    first = get("page_size=10")
    assert first.status_code == 200
    assert first.data["mode"] == "cursor" and first.data["count"] is None and first.data["page"] is None
    assert first.data["previous"] is None and first.data["page_size"] == 10
    seen = ids(first)
    response = first
    while response.data["next"]:
        response = follow(response.data["next"])
        seen += ids(response)
    assert seen == runs
    back = follow(response.data["previous"])
    assert ids(back) == runs[10:20]


def test_a_row_added_while_walking_does_not_shift_the_cursor(runs):
    first = get("pageSize=10")
    PipelineRun.objects.create()  # newer than every row listed: lands before the cursor
    second = follow(first.data["next"])
    assert ids(second) == runs[10:20]


def test_default_page_size_is_fifty(runs):
    response = get()
    assert response.data["page_size"] == 50 and ids(response) == runs and response.data["next"] is None


def test_page_mode_with_the_old_page_and_page_size(runs):
    response = get("page=2&pageSize=10")
    assert response.status_code == 200
    assert response.data["mode"] == "page"
    assert (response.data["count"], response.data["page"], response.data["page_size"]) == (25, 2, 10)
    assert ids(response) == runs[10:20]
    assert "page=3" in response.data["next"] and "page=1" in response.data["previous"]
    last = follow(response.data["next"])
    assert ids(last) == runs[20:] and last.data["next"] is None


def test_page_past_the_end_is_empty_and_points_back_to_the_last_page(runs):
    response = get("page=9&page_size=10")
    assert response.status_code == 200
    assert response.data["results"] == [] and response.data["next"] is None and response.data["count"] == 25
    assert "page=3" in response.data["previous"]


def test_the_view_may_order_by_something_else_than_time(runs):
    response = get("page_size=5", view=RunByIdView)
    assert ids(response) == sorted(runs)[:5]
    assert ids(get("page=2&page_size=5", view=RunByIdView)) == sorted(runs)[5:10]


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("pageSize=0", "pageSize"),
        ("pageSize=1001", "pageSize"),
        ("page_size=abc", "page_size"),
        ("page_size=-1", "page_size"),
        ("page=0", "page"),
        ("page=1000001", "page"),
        ("page=1.5", "page"),
        ("page=2&pageSize=5000", "pageSize"),
    ],
)
def test_out_of_bounds_is_a_400_naming_the_parameter(runs, query, field):
    response = get(query)
    assert response.status_code == 400
    assert response.data["code"] == "invalid"
    assert list(response.data["errors"]) == [field]
    assert field in response.data["detail"]


def test_bounds_themselves_are_accepted(runs):
    assert get("pageSize=1").data["page_size"] == 1
    assert get("pageSize=1000").data["page_size"] == 1000
    assert get("page=1000000&pageSize=1").data["results"] == []


def test_page_size_in_two_casings_is_a_400(runs):
    response = get("pageSize=5&page_size=5")
    assert response.status_code == 400 and response.data["code"] == "given_twice"


def test_page_and_cursor_together_is_a_400(runs):
    cursor_link = get("page_size=5").data["next"]
    response = follow(cursor_link + "&page=2")
    assert response.status_code == 400 and list(response.data["errors"]) == ["page"]


def test_a_broken_cursor_is_a_400_naming_it(runs):
    # Schemathesis over HTTP found DRF's 404 "Invalid cursor": a list that exists, refusing a parameter.
    for cursor in ("not-a-cursor", "0", "%C3%B6%C2%BA"):
        response = get(f"cursor={cursor}")
        assert response.status_code == 400 and list(response.data["errors"]) == ["cursor"], cursor


def test_schema_documents_the_shape_and_the_parameters():
    generator = SchemaGenerator(patterns=[path("api/runs", RunListView.as_view())])
    schema = generator.get_schema(request=None, public=True)
    operation = schema["paths"]["/api/runs"]["get"]
    assert {p["name"] for p in operation["parameters"]} == {"cursor", "page", "page_size", "pageSize"}
    body = operation["responses"]["200"]["content"]["application/json"]["schema"]
    component = schema["components"]["schemas"][body["$ref"].rsplit("/", 1)[1]]
    assert set(component["required"]) == {"mode", "next", "previous", "count", "page", "page_size", "results"}
    assert component["properties"]["results"]["type"] == "array"


def test_a_page_of_digits_that_are_not_ascii_is_a_400(runs):
    # Schemathesis over HTTP found a 500: "¹60".isdigit() is true and int() refuses it.
    for page in ("¹60", "٣", "²"):
        response = get(f"page={page}")
        assert response.status_code == 400 and list(response.data["errors"]) == ["page"], page
