"""uvicorn's server with a bounded drain: on SIGTERM (or Ctrl-C) the batcher refuses new requests at
once and, after --drain-timeout, answers whatever is still unanswered with 503."""

from __future__ import annotations

import uvicorn

# After --drain-timeout the handlers answer 503; this much more lets those answers be written.
DRAIN_MARGIN_S = 2.0


class DrainingServer(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, batcher, drain_s: float):
        super().__init__(config)
        self.batcher, self.drain_s = batcher, drain_s

    def handle_exit(self, sig, frame) -> None:
        if not self.should_exit and self.started:
            self.batcher.drain_soon(self.drain_s)
        super().handle_exit(sig, frame)


def server_for(app, *, access_log: bool, keep_alive_s: float, drain_s: float,
               log_level: str = "info") -> DrainingServer:
    """A server for `app` (from create_app), its uvicorn limits set."""
    config = uvicorn.Config(app, access_log=access_log, log_level=log_level, timeout_keep_alive=keep_alive_s,
                            timeout_graceful_shutdown=drain_s + DRAIN_MARGIN_S)
    return DrainingServer(config, app.state.batcher, drain_s)
