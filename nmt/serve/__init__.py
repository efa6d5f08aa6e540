"""`nmt-serve`: a JSON translation API with request batching and a page that draws the attention.

    pip install 'nmt[serve]'
    nmt-serve runs/demo --port 8000

    cli.py      the command: load the model(s), bind, serve until SIGINT/SIGTERM
    config.py   `ServeConfig`: every flag, one typed field each
    app.py      the routes, and every error as one JSON line
    schema.py   the request and answer schema, and request validation with one-line messages
    batcher.py  concurrent requests gathered into decoding batches on a worker thread
    parts.py    a batch cut by sentence length into parts decoded at once, each on its thread
    answer.py   an answer's attention budget (413), its records and their JSON
    guard.py    the Host and Origin checks and the API key
    limit.py    --limit-concurrency: requests in flight at once, the probes excepted
    metrics.py  GET /metrics (Prometheus)
    server.py   uvicorn's server with a bounded drain on SIGTERM
    page.html   the page at `/` (plain HTML and JavaScript, no build step, nothing fetched from elsewhere)
"""
