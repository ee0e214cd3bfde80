"""Deploys, releases and the commits they bring.

`records` holds the pure shapes and parsers (sentry-cli payloads, our JSON API, git commits);
`ranges` the pure choice of a deploy's commits; `service` the one `record_deploy` every way a
deploy arrives goes through (sentry-cli, `detector deploy`, the JSON API, GitHub, Sentry pull mode).
"""
