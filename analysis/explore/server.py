"""The explorer's web server: the page, its JSON API, and errors as one-line 4xx JSON.

  GET  /                      the page (static/, nothing fetched from elsewhere)
  GET  /api/model             the model (views.Explorer.describe) and the run's analysis results
  GET  /api/view?path=3,0,7,1[&z=SEED][&coefficients=...][&noise=S]   a state's image and rows
  GET  /api/random?index=K    the K-th random state of the command's --seed, with its view
  POST /api/reload            load the run's newest checkpoint (a run still training moves on)
  GET  /api/results/FILE      a plot of the analysis results (responsibility.png, ...)

Flask because it is the small, well-kept web library the ML tools around this one already use
(MLflow's server, the moto S3 server of this project's tests): routes are plain functions, and
its test client drives them without a socket.
"""

from __future__ import annotations

import errno
import ipaddress
import logging
import re
import socket
from collections.abc import Callable
from pathlib import Path

from analysis.explore.run_results import PLOTS, read_results
from analysis.explore.views import BadState, Explorer
from rpgan.errors import UserError

from flask import Flask, jsonify, request, send_file
from werkzeug.exceptions import HTTPException


def create_app(explorer: Explorer, results: Path | None, host: str = "127.0.0.1") -> Flask:
    """The explorer's app on `explorer`, showing the analysis results under `results` if any,
    served on `host` (--host): requests that name another host, or come from another site's
    page, are refused (`_foreign`)."""
    app = Flask(__name__, static_folder="static", static_url_path="/static")

    @app.before_request
    def same_origin():
        refused = _foreign(request.host, request.headers.get("Origin"), request.headers.get("Sec-Fetch-Site"), host,
                           request.method)
        if refused:
            return _error(refused, 403)

    @app.get("/")
    def page():
        return app.send_static_file("index.html")

    @app.get("/api/model")
    def model():
        return jsonify(explorer.describe() | {"results": read_results(results),
                                              "results_folder": None if results is None else str(results)})

    @app.get("/api/view")
    def view():
        return jsonify(explorer.view(explorer.parse(request.args)))

    @app.get("/api/random")
    def random():
        index = request.args.get("index", "0")
        if not re.fullmatch(r"[0-9]{1,15}", index):  # str.isdigit would take "²"
            raise BadState(f"index must be a whole number 0..{10**15 - 1}, got {index[:40]!r}")
        return jsonify(explorer.view(explorer.random_state(int(index))))

    @app.post("/api/reload")
    def reload():
        try:
            explorer.reload()
        except UserError as e:
            return _error(f"{e}; the page keeps showing the model loaded before", 410)
        return model()

    @app.get("/api/results/<name>")
    def plot(name: str):
        if name not in PLOTS or results is None:
            return _error(f"no analysis plot named {name!r}; the plots are {', '.join(PLOTS)}", 404)
        file = results / name
        if not file.is_file():
            return _error(f"{file} does not exist (never written, or deleted since the page loaded); "
                          f"`{PLOTS[name].command}` writes it", 404)
        return send_file(file.resolve(), mimetype="image/png", max_age=0)

    @app.errorhandler(BadState)
    def bad_state(e: BadState):
        return _error(str(e), 400)

    @app.errorhandler(HTTPException)
    def http_error(e: HTTPException):
        return _error(f"{e.name}: {e.description}", e.code or 500)

    @app.errorhandler(Exception)
    def internal(e: Exception):  # never a traceback on the page; the server's log has it
        app.logger.exception("explore: request failed")
        return _error(f"internal error ({type(e).__name__}: {str(e).splitlines()[0][:160] if str(e) else ''}); "
                      "the server's log has the details", 500)

    return app


def _error(message: str, code: int):
    return jsonify({"error": message}), code


def _foreign(host_header: str, origin: str | None, fetch_site: str | None, served: str, method: str) -> str | None:
    """Why a request is refused, or None. DNS rebinding: a page of evil.example whose name now
    resolves to this machine reaches the server with `Host: evil.example`; only this machine's
    names and IP addresses are served (an IP address cannot be rebound). Cross-site requests:
    another site's page may not make the server act (POST), which browsers mark with Origin and
    Sec-Fetch-Site; a command-line client sends neither."""
    name = host_header.rsplit(":", 1)[0] if not host_header.endswith("]") else host_header
    name = name.strip("[]").lower()
    try:
        ipaddress.ip_address(name)
        literal = True
    except ValueError:
        literal = False
    if not (literal or name in {"localhost", served.lower(), socket.gethostname().lower()}):
        return (f"this server answers requests for this machine only, not for host {name[:60]!r} (open it as "
                f"http://127.0.0.1:PORT/ or through an SSH tunnel)")
    if method != "GET" and (fetch_site == "cross-site" or origin and origin.split("://", 1)[-1] != host_header):
        return "another site's page may not act on this server (cross-origin request refused)"
    return None


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a host name: it may resolve to anything
        return False


def _json_errors():
    """werkzeug's request handler with the errors it answers itself, before the app sees a request
    (a request line over 64 KB: 414), as the app's one-line JSON instead of an HTML page."""
    from werkzeug.serving import WSGIRequestHandler

    class Handler(WSGIRequestHandler):
        error_content_type = "application/json"
        error_message_format = '{"error": "%(code)d %(message)s: %(explain)s"}'

    return Handler


def listen(app: Flask, host: str, port: int):
    """A threaded WSGI server for `app` bound to host:port (0: a free port), not yet serving;
    a port in use or an address not of this machine is a UserError."""
    from werkzeug.serving import make_server

    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # no line per request
    try:  # bound here: werkzeug's own bind prints its reason and exits 1
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
        with socket.socket(family, socket.SOCK_STREAM) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((host, port))
            sock.listen(128)
            return make_server(host, port, app, threaded=True, fd=sock.fileno(),  # it holds a duplicate
                               request_handler=_json_errors())
    except socket.gaierror:
        raise UserError(f"--host {host} is not a name or address this machine can resolve; pass --host "
                        "127.0.0.1 (the default) or one of this machine's addresses") from None
    except OSError as e:
        if e.errno == errno.EADDRNOTAVAIL:
            raise UserError(f"cannot listen on {host}: it is not an address of this machine; pass --host 127.0.0.1 "
                            "(the default) or one of this machine's addresses") from None
        raise UserError(f"cannot listen on {host}:{port} ({e.strerror or e}); pass another --port "
                        "(--port 0 picks a free one)") from None


def url(server) -> str:
    host = server.host
    return f"http://[{host}]:{server.port}/" if ":" in host else f"http://{host}:{server.port}/"


def serve(app: Flask, host: str, port: int, say: Callable[[str], None]) -> None:
    """Serve `app` on host:port until interrupted; `say` gets the URL once it listens."""
    server = listen(app, host, port)
    say(url(server))
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
