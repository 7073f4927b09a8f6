"""`ioltrace serve`: bind, attach, serve /metrics and/or a textfile until
stopped; always detach, close the socket and remove the temporary file.

The order of things: validate the address, the web config (webconfig.py:
TLS, basic auth), the textfile path and the user to become, and bind the
socket; then attach; then switch to that user with the fewest capabilities
(privileges.py) before any thread starts; then serve until a stop signal.
"""

import os
import sys
import threading
import time
from dataclasses import dataclass

from .. import __version__, bykeys, layers, loader, privileges, probepath, serve, session, webconfig
from ..errors import BadInput
from ..export import prometheus
from ..resolve import Resolver
from . import common


@dataclass(frozen=True)
class Options(common.Traced):
    listen: str = None       # None: serve.DEFAULT_LISTEN, or none with a textfile
    textfile: str = None
    interval: float = serve.DEFAULT_INTERVAL
    per_process: bool = False
    max_series: int = prometheus.DEFAULT_MAX_SERIES
    total: bool = False
    web_config: str = None   # exporters' web config YAML: TLS, basic auth
    user: str = None         # None: nobody when started as root, else as started
    by: str = None           # None: the default levels; else one level of these keys (bykeys)


def main(opts: Options) -> int:
    listen = opts.listen
    if listen is None:
        # A textfile alone is for sites that open no ports.
        listen = "none" if opts.textfile else serve.DEFAULT_LISTEN
    addr = serve.parse_listen(listen)
    if addr is None and not opts.textfile:
        raise BadInput("--listen none", "nothing to serve", "give --textfile PATH, or an address to listen on")
    web = webconfig.load(opts.web_config) if opts.web_config else None
    if web is not None and addr is None:
        raise BadInput("--web-config", "applies to the HTTP listener, and --listen is none")
    if opts.by and opts.per_process:
        raise BadInput("--per-process", "--by exports one grouping only, and --per-process adds another",
                       "leave it out, or use --by process (or process,disk, process,op)")
    resolver = Resolver()
    chosen = common.chosen_layers(opts)
    stages = ("queue", "device", "total") if opts.total else ("queue", "device")
    size_depth = opts.size_depth and "block" in chosen
    if size_depth:
        stages += layers.BLOCK.optional
    kopts = common.kernel_options(opts, resolver, total_hist=opts.total, size_depth=size_depth,
                                  probes=probepath.MODES.index(opts.probes))
    textfile = serve.Textfile(opts.textfile) if opts.textfile else None
    become = privileges.target(opts.user, os.path.dirname(textfile.path) if textfile else None)
    server = tracer = scraper = thread = None
    try:
        if addr is not None:
            # Bound before attaching, so a busy port costs no probe set-up;
            # requests wait in the backlog until the thread starts.
            server = serve.bind(addr, lambda fmt: scraper.render(fmt), web=web)
        tracer = loader.Tracer(kopts, verbose=opts.verbose, layers=chosen, syscalls=opts.syscalls,
                               keep_exited=opts.keep_exited, on_fold=(resolver.forget,))
        info = {"version": __version__, "start_tracepoint": tracer.start_tp or "none",
                "headers": tracer.headers.kind, "layers": ",".join(chosen)}
        exporter = prometheus.Exporter(resolver, per_process=opts.per_process, max_series=opts.max_series,
                                       stages=stages, info=info, layers=chosen, by=bykeys.of(opts.by))
        scraper = serve.Scraper(tracer, exporter)
        if become is not None:
            # Before any thread starts: capabilities are per thread.
            sys.stderr.write(privileges.drop(become, *tracer.descriptors()).describe() + "\n")
        with session.Stopper() as stopper:
            if server is not None:
                thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2},
                                          name="ioltrace-http", daemon=True)
                thread.start()
                sys.stderr.write(f"serving {serve.url(server.server_address, server.web.scheme)} and /healthz"
                                 + (f" ({web.describe()})" if web else "") + "\n")
            if textfile is not None:
                sys.stderr.write(f"writing {textfile.path} every {opts.interval:g}s\n")
                if not textfile.path.endswith(".prom"):
                    sys.stderr.write("note: node_exporter's textfile collector reads only *.prom files\n")
            session.banner(tracer, opts.verbose)
            t0 = time.monotonic()
            n = 0
            while not stopper.stopped:
                if textfile is not None:
                    textfile.write(scraper.render(prometheus.TEXT))
                    n += 1
                    stopper.sleep_until(t0 + n * opts.interval)
                else:
                    stopper.sleep_until(time.monotonic() + 3600)
            if textfile is not None:
                # The last interval's I/O too; the file stays for the
                # collector (node_textfile_mtime_seconds says how old it is).
                textfile.write(scraper.render(prometheus.TEXT))
    finally:
        if server is not None:
            if thread is not None:
                server.shutdown()
            server.server_close()
        if scraper is not None:
            scraper.close()
        if tracer is not None:
            tracer.close()
        if textfile is not None:
            textfile.cleanup()
    parts = [f"{server.served} scrapes"] if server else []
    if textfile is not None:
        parts.append(f"{textfile.writes} textfile writes")
    sys.stderr.write(f"ioltrace serve: stopped after {', '.join(parts)}; probes detached\n")
    return 0
