"""The request policy (etl.api.request_policy) on small serializers and views
defined here: both casings, unknown keys, fields given twice, ignored old
options, ids as strings, explicit sources, query parameters."""

from __future__ import annotations

import pytest
from django.http import QueryDict
from rest_framework import serializers
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.test import APIRequestFactory
from rest_framework.views import APIView

from etl.api.request_policy import (
    CurlJsonFormParser,
    IdField,
    PolicySerializer,
    PolicyValidationError,
    PolicyViewMixin,
    RelatedIdField,
    SourcesField,
    camel_name,
    id_parse,
    ignored_options_record,
    old_names_add,
    query_params_parse,
    snake_name,
)
from etl.models import DataProvider, PipelineRun

pytestmark = pytest.mark.django_db

factory = APIRequestFactory()


class InnerRequest(PolicySerializer):
    data_path = serializers.CharField(required=False)
    ignored_options = {"slaTarget": "no SLA alerts per request"}


class PipelineLikeRequest(PolicySerializer):
    batch_size = serializers.IntegerField(default=1000, min_value=1)
    continue_on_failure = serializers.BooleanField(default=False)
    asset_class_filter = serializers.ListField(child=serializers.CharField(), required=False)
    overwrite = serializers.BooleanField(default=False)
    run_id = IdField(required=False)
    inner = InnerRequest(required=False)
    old_names = {"overwriteExistingData": "overwrite", "correctionId": "run_id"}
    ignored_options = {
        "executeInParallel": "steps run in dependency order, one after the other",
        "sendNotificationOnCompletion": "notifications follow the alert rules, not the request",
    }


class PipelineLikeView(PolicyViewMixin, APIView):
    permission_classes = [AllowAny]
    authentication_classes: list = []

    def post(self, request):
        params = self.policy_body(PipelineLikeRequest)
        return Response({"received": dict(params.validated_data)}, status=202)

    def get(self, request):
        query = self.policy_query_params(
            fields=["page", "page_size", "start_date"], ignored_options={"includeDeleted": "nothing is deleted"}
        )
        return Response({"values": query.values})


def post(body, *, fmt="json"):
    return PipelineLikeView.as_view()(factory.post("/x", body, format=fmt))


def get(query: str):
    return PipelineLikeView.as_view()(factory.get("/x?" + query))


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("batchSize", "batch_size"),
        ("BatchSize", "batch_size"),
        ("batch_size", "batch_size"),
        ("maxURLLength", "max_url_length"),
        ("MarketDataRecordsWithoutSymbols", "market_data_records_without_symbols"),
        ("page", "page"),
    ],
)
def test_snake_name_reads_every_casing(given, expected):
    assert snake_name(given) == expected


def test_camel_name_is_how_the_old_system_spelt_our_fields():
    assert camel_name("continue_on_failure") == "continueOnFailure"
    assert camel_name("page") == "page"


def test_camel_case_and_snake_case_both_reach_the_field():
    camel = post({"batchSize": 800, "continueOnFailure": True, "assetClassFilter": ["CRYPTO"]})
    snake = post({"batch_size": 800, "continue_on_failure": True, "asset_class_filter": ["CRYPTO"]})
    assert camel.status_code == snake.status_code == 202
    assert camel.data["received"] == snake.data["received"]
    assert camel.data["received"]["batch_size"] == 800


def test_unknown_field_is_a_400_naming_it_in_the_one_error_shape():
    response = post({"batchSize": 10, "batchSise": 11})
    assert response.status_code == 400
    assert response.data["code"] == "unknown_field"
    assert "unknown field 'batchSise'" in response.data["detail"]
    assert list(response.data["errors"]) == ["batchSise"]
    assert "batch_size" in response.data["errors"]["batchSise"][0]  # it lists what is accepted


def test_the_same_field_in_two_casings_is_a_400():
    response = post({"batchSize": 10, "batch_size": 11})
    assert response.status_code == 400
    assert response.data["code"] == "given_twice"
    assert "batchSize" in response.data["detail"] and "batch_size" in response.data["detail"]


def test_an_old_name_and_our_name_for_one_field_are_given_twice():
    response = post({"overwrite": True, "overwriteExistingData": False})
    assert response.status_code == 400 and response.data["code"] == "given_twice"


def test_an_old_name_reaches_our_field_in_either_casing():
    assert post({"overwriteExistingData": True}).data["received"]["overwrite"] is True
    assert post({"overwrite_existing_data": True}).data["received"]["overwrite"] is True


def test_ignored_old_option_is_a_2xx_with_the_option_and_its_reason():
    response = post({"batchSize": 5, "executeInParallel": True, "send_notification_on_completion": True})
    assert response.status_code == 202
    assert response.data["ignored_options"] == {
        "executeInParallel": "steps run in dependency order, one after the other",
        "send_notification_on_completion": "notifications follow the alert rules, not the request",
    }
    assert "execute_in_parallel" not in response.data["received"]


def test_a_request_without_ignored_options_says_so_with_an_empty_dict():
    assert post({"batchSize": 5}).data["ignored_options"] == {}


def test_an_ignored_option_given_twice_is_a_400():
    response = post({"executeInParallel": True, "execute_in_parallel": False})
    assert response.status_code == 400 and response.data["code"] == "given_twice"


def test_nested_serializer_follows_the_policy_and_reports_under_its_parent():
    ok = post({"inner": {"dataPath": "BIST", "slaTarget": "00:45:00"}})
    assert ok.status_code == 202
    assert ok.data["received"]["inner"] == {"data_path": "BIST"}
    assert ok.data["ignored_options"] == {"inner.slaTarget": "no SLA alerts per request"}
    bad = post({"inner": {"dataPathh": "BIST"}})
    assert bad.status_code == 400 and bad.data["code"] == "unknown_field"
    assert list(bad.data["errors"]) == ["inner.dataPathh"]


def test_an_unknown_field_is_named_even_next_to_an_invalid_value():
    response = post({"batchSize": 0, "colour": "red"})
    assert response.status_code == 400
    assert response.data["code"] == "unknown_field"
    assert set(response.data["errors"]) == {"colour"}  # the keys are checked before the values


def test_other_validation_errors_keep_the_code_invalid():
    response = post({"batchSize": 0})
    assert response.status_code == 400
    assert response.data["code"] == "invalid"
    assert list(response.data["errors"]) == ["batch_size"]


def test_a_body_that_is_not_an_object_is_a_400_not_a_500():
    response = post([1, 2, 3])
    assert response.status_code == 400 and response.data["code"] == "invalid"


def test_form_posts_keep_their_lists_through_the_renaming():
    body = QueryDict(mutable=True)
    body.setlist("assetClassFilter", ["CRYPTO", "STOCK"])
    body["batchSize"] = "7"
    serializer = PipelineLikeRequest(data=body)
    assert serializer.is_valid(), serializer.errors
    assert serializer.validated_data["asset_class_filter"] == ["CRYPTO", "STOCK"]
    assert serializer.validated_data["batch_size"] == 7


def test_serializer_declared_in_camel_case_also_takes_snake_case():
    class OldStyle(PolicySerializer):
        batchSize = serializers.IntegerField()

    serializer = OldStyle(data={"batch_size": 3})
    assert serializer.is_valid(), serializer.errors
    assert serializer.validated_data == {"batchSize": 3}


def test_is_valid_without_raising_reports_the_errors():
    serializer = PipelineLikeRequest(data={"nope": 1})
    assert serializer.is_valid() is False
    assert serializer.errors["nope"][0].code == "unknown_field"
    with pytest.raises(PolicyValidationError) as raised:
        PipelineLikeRequest(data={"nope": 1}).is_valid(raise_exception=True)
    assert raised.value.api_code == "unknown_field"


@pytest.mark.parametrize(("given", "expected"), [(12, 12), ("12", 12), (" 12 ", 12), ("0012", 12)])
def test_ids_as_the_old_system_printed_them(given, expected):
    assert id_parse(given) == expected
    assert post({"correctionId": given}).data["received"]["run_id"] == expected


def test_an_id_with_a_declared_prefix_is_read():
    assert id_parse("correction:12", prefixes=("correction",)) == 12
    assert id_parse("Correction-7", prefixes=("correction",)) == 7
    with pytest.raises(ValueError):
        id_parse("import:12", prefixes=("correction",))


@pytest.mark.parametrize("given", [True, 12.5, "12.5", "1e3", "abc", "your-operation-id-here", 0, -3, "9" * 20, None])
def test_a_value_that_is_not_an_id_is_a_400_saying_so(given):
    response = post({"runId": given})
    assert response.status_code == 400
    assert list(response.data["errors"]) == ["run_id"]


def test_related_id_field_finds_the_row_from_a_string():
    run = PipelineRun.objects.create()

    class RunRequest(PolicySerializer):
        run = RelatedIdField(queryset=PipelineRun.objects.all())

    serializer = RunRequest(data={"run": str(run.pk)})
    assert serializer.is_valid(), serializer.errors
    assert serializer.validated_data["run"] == run
    missing = RunRequest(data={"run": str(run.pk + 1000)})
    assert not missing.is_valid() and "does not exist" in str(missing.errors["run"][0])
    assert not RunRequest(data={"run": "run-x"}).is_valid()


class SourcesRequest(PolicySerializer):
    sources = SourcesField(always_available=["LOCAL"], required=False)
    old_names = {"enabledSources": "sources"}


def test_a_named_source_without_its_key_is_a_400_saying_why(reference_data, settings):
    settings.PROVIDER_API_KEYS = {**settings.PROVIDER_API_KEYS, "COINMARKETCAP": ""}
    assert DataProvider.objects.get(code="COINMARKETCAP").requires_api_key
    serializer = SourcesRequest(data={"enabledSources": ["COINMARKETCAP"]})
    assert not serializer.is_valid()
    message = str(serializer.errors["sources"][0])
    assert "COINMARKETCAP" in message and "COINMARKETCAP_API_KEY" in message and "disabled" in message
    DataProvider.objects.filter(code="COINMARKETCAP").update(is_enabled=True)
    serializer = SourcesRequest(data={"enabledSources": ["COINMARKETCAP"]})
    assert not serializer.is_valid()
    assert "disabled" not in str(serializer.errors["sources"][0])
    with pytest.raises(PolicyValidationError) as raised:
        SourcesRequest(data={"enabledSources": ["COINMARKETCAP"]}).is_valid(raise_exception=True)
    assert raised.value.api_code == "source_unavailable"


def test_a_named_source_that_is_disabled_or_unknown_is_a_400(reference_data):
    DataProvider.objects.filter(code="YAHOO_FINANCE").update(is_enabled=False)
    serializer = SourcesRequest(data={"sources": ["yahoo_finance", "NOPE"]})
    assert not serializer.is_valid()
    messages = [str(m) for m in serializer.errors["sources"]]
    assert any("YAHOO_FINANCE: disabled" in m for m in messages)
    assert any("NOPE: no such provider" in m for m in messages)


def test_named_sources_that_can_run_pass_upper_cased(reference_data, settings):
    settings.PROVIDER_API_KEYS = {**settings.PROVIDER_API_KEYS, "COINMARKETCAP": "key-for-tests"}
    DataProvider.objects.filter(code="COINMARKETCAP").update(is_enabled=True)
    serializer = SourcesRequest(data={"sources": ["coinmarketcap", "LOCAL", "YAHOO_FINANCE"]})
    assert serializer.is_valid(), serializer.errors
    assert serializer.validated_data["sources"] == ["COINMARKETCAP", "LOCAL", "YAHOO_FINANCE"]


def test_query_parameters_in_either_casing_with_ignored_ones_apart():
    query = QueryDict("pageSize=50&page=2&startDate=2024-01-01&includeDeleted=true")
    params = query_params_parse(
        query, fields=["page", "page_size", "start_date"], ignored_options={"includeDeleted": "nothing is deleted"}
    )
    assert params.values == {"page_size": ["50"], "page": ["2"], "start_date": ["2024-01-01"]}
    assert params.get("page_size") == "50" and params.get("missing", "x") == "x"
    assert params.ignored_options == {"includeDeleted": "nothing is deleted"}


def test_a_repeated_query_parameter_keeps_every_value():
    params = query_params_parse(QueryDict("status=failed&status=queued"), fields=["status"])
    assert params.values == {"status": ["failed", "queued"]} and params.get("status") == "queued"


def test_an_unknown_query_parameter_is_a_400_naming_it():
    response = get("pageSize=5&pagesize_typo=1")
    assert response.status_code == 400
    assert response.data["code"] == "unknown_field"
    assert list(response.data["errors"]) == ["pagesize_typo"]


def test_a_query_parameter_in_two_casings_is_a_400():
    response = get("pageSize=5&page_size=6")
    assert response.status_code == 400 and response.data["code"] == "given_twice"


def test_an_ignored_query_parameter_comes_back_under_ignored_options():
    response = get("page=1&includeDeleted=1")
    assert response.status_code == 200
    assert response.data == {"values": {"page": ["1"]}, "ignored_options": {"includeDeleted": "nothing is deleted"}}


def test_ignored_options_are_kept_on_the_run_record_without_losing_its_options():
    run = PipelineRun.objects.create(options={"path": "DATA"})
    PipelineRun.objects.filter(pk=run.pk).update(options={"path": "DATA", "batch_size": 5})  # a worker's write
    ignored_options_record(run=run, ignored={"executeInParallel": "dependency order"})
    run.refresh_from_db()
    ignored = {"executeInParallel": "dependency order"}
    assert run.options == {"path": "DATA", "batch_size": 5, "ignored_options": ignored}
    before = run.options
    ignored_options_record(run=run, ignored={})
    run.refresh_from_db()
    assert run.options == before


def test_old_response_names_are_added_as_copies_of_ours():
    data = {"created": 3, "overall": {"without_symbol": 0, "symbol_coverage": 95.5}}
    out = old_names_add(
        data,
        {
            "SymbolsAdded": "created",
            "MarketDataRecordsWithoutSymbols": "overall.without_symbol",
            "SymbolCoverage": "overall.symbol_coverage",
            "Missing": "overall.nothing_here",
        },
    )
    assert out == {**data, "SymbolsAdded": 3, "MarketDataRecordsWithoutSymbols": 0, "SymbolCoverage": 95.5}


class CurlBodyView(PipelineLikeView):
    parser_classes = [CurlJsonFormParser]


def curl_post(raw: str):
    request = factory.generic("POST", "/x", raw, content_type="application/x-www-form-urlencoded")
    return CurlBodyView.as_view()(request)


def test_curl_json_without_content_type_is_read_as_json():
    response = curl_post('{"batchSize": 500, "executeInParallel": true}')
    assert response.status_code == 202
    assert response.data["received"]["batch_size"] == 500
    assert list(response.data["ignored_options"]) == ["executeInParallel"]


def test_a_real_form_body_stays_a_form():
    response = curl_post("batchSize=7&assetClassFilter=CRYPTO&assetClassFilter=STOCK")
    assert response.status_code == 202
    assert response.data["received"]["batch_size"] == 7
    assert response.data["received"]["asset_class_filter"] == ["CRYPTO", "STOCK"]


def test_broken_json_in_a_form_body_is_a_400():
    response = curl_post('{"batchSize": ')
    assert response.status_code == 400 and response.data["code"] == "parse_error"
