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
    pairs.py    several language pairs in one server (PAIR=RUN[,RUN]), each with its own batcher
    libre.py    which /translate requests are LibreTranslate's, their fields and schema
    compat.py   LibreTranslate's routes: its /translate answers, GET /languages, POST /detect
    refusal.py  a refused request: its status and one-line message
    sizes.py    a request's sentences, characters and hypotheses against the limits (413), both APIs
    limit.py    --limit-concurrency: requests in flight at once, the probes excepted
    shape.py    a refusal before any route runs, in the shape of the API the request speaks
    receive.py  a request's body within the size limit, and its client's disconnect
    metrics.py  GET /metrics (Prometheus)
    server.py   uvicorn's server with a bounded drain on SIGTERM
    page.html   the page at `/` (plain HTML and JavaScript, no build step, nothing fetched from elsewhere)
"""
