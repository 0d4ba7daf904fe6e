"""Where Django finds the app's models: each sub-domain keeps its own."""

from enrichment.assets.models import *  # noqa: F401,F403
from enrichment.candles.models import *  # noqa: F401,F403
from enrichment.providers.models import *  # noqa: F401,F403
