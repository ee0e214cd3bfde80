"""Source maps: artifact bundles uploaded by sentry-cli, and resolving minified JavaScript frames.

Pure modules: `urls` (which uploaded file serves a frame's URL), `bundle` (reading an artifact bundle),
`chunks` (the chunk-upload protocol), `resolve` (one frame through one source map, with `symbolic`).
I/O: `symbolicator` (the digest's `Symbolicator`, backed by `detector.store.artifacts`).
"""
