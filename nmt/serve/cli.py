"""`nmt-serve RUN_DIR`: load a model and serve it with uvicorn until SIGINT/SIGTERM."""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import signal
import socket
from pathlib import Path

from nmt.cli.common import quiet_libraries, user_errors
from nmt.cli.flags import add_config_flags, config_from_flags
from nmt.errors import NmtError
from nmt.serve.config import INFO_LIMITS, ServeConfig
from nmt.serve.pairs import ModelSpec, Pair, Pairs, check_codes, model_specs

log = logging.getLogger("nmt.serve")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="nmt-serve", formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        description="Serve trained models over HTTP: POST /translate (JSON; LibreTranslate's API too, with "
                    "GET /languages and POST /detect), GET /health, /ready, /info, "
                    "/metrics (Prometheus), /openapi.json, and at / a web page that translates and draws the "
                    "attention. SIGTERM or Ctrl-C answers the requests in flight (for --drain-timeout), then stops.")
    parser.add_argument("run_dir", nargs="+", metavar="RUN_DIR",
                        help="run directory (its best checkpoint) or checkpoint directory; several make an "
                             "ensemble (the mean of their log-probabilities; they must share the tokenizer). "
                             "Several pairs: PAIR=RUN[,RUN] each, e.g. de-en=runs/de-en en-de=runs/en-de "
                             "(a comma joins an ensemble; PAIR is the recipe's data.src_lang-data.tgt_lang)")
    add_config_flags(parser, ServeConfig, with_defaults=True, title="serving")
    return parser


def _listen(host: str, port: int) -> socket.socket:
    """Bind before starting uvicorn, so that a busy port is a one-line error (and port 0 picks a free one)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # proto named, unlike socket.create_server: asyncio turns Nagle off only on IPPROTO_TCP sockets, and
    # with Nagle on, every keep-alive request waited ~40 ms for a delayed ACK.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(2048)
        return sock
    except (OSError, OverflowError) as err:
        sock.close()
        raise NmtError(f"{host}:{port}: cannot listen ({getattr(err, 'strerror', None) or err})") from None


def model_info(translator, paths: list[str], cfg: ServeConfig) -> dict:
    """What GET /info tells: names, not paths (a client has no business knowing the server's file
    system); for an ensemble, the first model's checkpoint, architecture and decode settings."""
    from nmt.checkpoint import read_meta, resolve
    from nmt.model.seq2seq import count_parameters
    from nmt.serve.app import decode_threads

    ckpt = resolve(paths[0])
    meta = read_meta(ckpt)
    mcfg, tokenizer = translator.cfg, translator.tokenizer
    return {"model": " + ".join(Path(p).resolve().name for p in paths), "checkpoint": ckpt.name,
            "step": meta.get("step"), "ensemble": len(paths),
            "source_language": mcfg.data.src_lang, "target_language": mcfg.data.tgt_lang,
            "parameters": sum(count_parameters(m) for m in translator.models),
            "architecture": dataclasses.asdict(mcfg.model),
            "vocabulary": {"source": tokenizer.src_vocab_size, "target": tokenizer.tgt_vocab_size},
            "decode": dataclasses.asdict(mcfg.decode), "device": str(translator.device), "dtype": translator.dtype,
            "limits": {name: getattr(cfg, name) for name in INFO_LIMITS},
            "batching": {"enabled": cfg.batching, "wait_ms": cfg.batch_wait_ms, "sentences": cfg.batch_sentences,
                         "decode_threads": decode_threads(cfg, translator)[0]}}


def _load(spec: ModelSpec, cfg: ServeConfig) -> Pair:
    """A pair's model (an ensemble for several paths), its codes checked against its name."""
    from nmt.translate.translator import Translator

    translator = Translator.load(spec.paths if len(spec.paths) > 1 else spec.paths[0], device=cfg.device or None,
                                 dtype=cfg.dtype)
    source, target = translator.cfg.data.src_lang, translator.cfg.data.tgt_lang
    check_codes(spec, source, target)
    return Pair(source, target, translator, model_info(translator, spec.paths, cfg))


@user_errors
def serve_main(argv=None) -> int:
    args = _parser().parse_intermixed_args(argv)  # RUN_DIRs may come after options
    cfg = config_from_flags(args, ServeConfig)
    try:
        from nmt.serve.app import create_app
        from nmt.serve.guard import load_api_key
        from nmt.serve.server import server_for
    except ImportError as err:
        raise NmtError(f"nmt-serve needs the serve extra: pip install 'nmt[serve]' ({err})") from None
    quiet_libraries()
    api_key = load_api_key(cfg.api_key_file)
    specs = model_specs(args.run_dir)  # before binding: a wrong argument is a one-line error
    sock = _listen(cfg.host, cfg.port)  # before loading: a busy port fails fast; early clients wait in the backlog
    pairs = Pairs([_load(spec, cfg) for spec in specs])
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    for pair in pairs:
        log.info("serving %s (%s→%s, %d parameters)", pair.info["model"], pair.source, pair.target,
                 pair.info["parameters"])
    log.info("at http://%s:%d/%s", shown, port, " (API docs at /docs)" if cfg.docs else "")
    app = create_app(pairs, cfg, api_key=api_key)
    server = server_for(app, access_log=cfg.access_log, keep_alive_s=cfg.keep_alive_s, drain_s=cfg.drain_timeout)
    # uvicorn handles SIGTERM itself (in-flight requests are answered), then raises it again once stopped;
    # this handler makes that a clean exit 0, as nmt-train's after SIGTERM.
    signal.signal(signal.SIGTERM, lambda signum, frame: None)
    server.run(sockets=[sock])
    if not server.started:
        raise NmtError("the server did not start (see the log above)")
    if app.state.batcher.abandoned:
        # The worker thread still decodes a batch no one waits for; interpreter exit would join it.
        log.warning("exiting with a decoding batch abandoned after --drain-timeout %g s", cfg.drain_timeout)
        logging.shutdown()
        os._exit(0)
    return 0
