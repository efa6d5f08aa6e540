"""`nmt-serve`: a JSON translation API with request batching and a page that draws the attention.

    pip install 'nmt[serve]'
    nmt-serve runs/demo --port 8000

Modules: `batcher` gathers concurrent requests into decoding batches on a worker thread, `schema`
validates requests and shapes answers, `app` holds the routes, `cli` the command. `page.html` is
the web page served at `/` (plain HTML and JavaScript, no build step, nothing fetched from elsewhere).
"""
