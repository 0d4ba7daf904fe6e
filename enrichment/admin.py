# Each sub-domain registers its own admin pages.
from enrichment.assets import admin as assets_admin  # noqa: F401
from enrichment.candles import admin as candles_admin  # noqa: F401
from enrichment.providers import admin as providers_admin  # noqa: F401
