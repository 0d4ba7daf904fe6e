from django.apps import AppConfig


class BatchimportConfig(AppConfig):
    name = "batchimport"
