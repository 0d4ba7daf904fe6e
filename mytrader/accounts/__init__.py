"""Operators' own settings (language, time zone), applied to every admin page by
`mytrader.middleware.OperatorPreferenceMiddleware`."""
