"""Runs the app under uvicorn with TLS 1.2+ and, when configured, client certificates (mutual TLS).

uvicorn does not put the peer certificate in the ASGI scope, so the HTTP protocol is subclassed to
copy the verified client certificate's subject into the connection's state (`request.state`), and its
common name apart (`tls_client_common_name`: the subject string cannot be split back safely when a
value holds a comma; the development token endpoint binds a client to its certificate by CN).
"""

from __future__ import annotations

import os
import socket
import ssl

import uvicorn
from uvicorn.config import STARTUP_FAILURE
from uvicorn.protocols.http.auto import AutoHTTPProtocol
from uvicorn.supervisors.multiprocess import Multiprocess, Process, logger

from gateway.log_format import LOG_CONFIG
from gateway.pki import server_ssl_context
from gateway.settings import Settings


class ClientCertificateProtocol(AutoHTTPProtocol):
    def connection_made(self, transport) -> None:  # type: ignore[override]
        ssl_object = transport.get_extra_info("ssl_object")
        certificate = ssl_object.getpeercert() if ssl_object is not None else None
        if certificate:
            attributes = [(k, v) for rdn in certificate.get("subject", ()) for k, v in rdn]
            subject = ",".join(f"{k}={v}" for k, v in attributes)
            common_names = [v for k, v in attributes if k == "commonName"]
            self.app_state = {**self.app_state, "tls_client_subject": subject,
                              "tls_client_common_name": common_names[0] if len(common_names) == 1 else None}
        super().connection_made(transport)


def ssl_context_for(settings: Settings) -> ssl.SSLContext:
    return server_ssl_context(settings.tls_cert, settings.tls_key, settings.client_ca, settings.require_client_cert)


def _ssl_factory(_config, _default) -> ssl.SSLContext:
    # Module-level so that worker processes (spawned) can rebuild it from the EPR_* environment.
    return ssl_context_for(Settings())


def bind_sockets(host: str, port: int, *, workers: int = 1) -> list[socket.socket]:
    """The listening sockets, bound before anything is announced: one, or with several workers one per
    worker on the same port (SO_REUSEPORT: see `SocketPerWorker`). OSError (e.g. the port is taken)
    goes to the caller, which says so in one line instead of uvicorn's log and exit."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    if workers > 1 and port:
        # SO_REUSEPORT lets any process of the same user join the port: a second gateway started there by
        # mistake would share the connections silently. A plain bind first says whether anyone listens.
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind((host, port))
    sockets: list[socket.socket] = []
    try:
        for _ in range(max(1, workers)):
            listening = socket.socket(family, socket.SOCK_STREAM)
            sockets.append(listening)
            listening.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if workers > 1:
                listening.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            # Each socket on the port the first one got (port 0: the kernel's choice, once).
            listening.bind((host, sockets[0].getsockname()[1] if len(sockets) > 1 else port))
            listening.listen(2048)
            listening.set_inheritable(True)  # the worker processes serve them
    except OSError:
        for listening in sockets:
            listening.close()
        raise
    return sockets


class SocketPerWorker(Multiprocess):
    """uvicorn's supervisor with one listening socket per worker, all on the same port (SO_REUSEPORT).

    Why: on one socket shared by the workers, the worker that wakes first accepts every connection
    waiting (its event loop accepts until the backlog is empty), and keep-alive connections stay where
    they were accepted: a pool of connections opened while one worker is busy for a moment (a long
    request, a commit) all land on the other, which then serves alone while its sibling idles
    (bench_scale measured [0.0, 0.92] cores on two workers, slower than one). With a socket each, the
    kernel spreads new connections over the workers by their addresses' hash, whatever each is doing.
    The parent keeps every socket open: a worker that dies is replaced on its own socket, and the
    connections queued there wait for the replacement instead of being reset.

    uvicorn's `Multiprocess` gives every process all its sockets; the three places it starts one are
    repeated here with the worker's own socket (uvicorn is pinned; tests/functional/
    test_workers_share_connections.py stops a worker, kills one, and checks the shares)."""

    def __init__(self, config: uvicorn.Config, sockets: list[socket.socket]):
        super().__init__(config, sockets)
        if len(sockets) != self.processes_num:
            raise ValueError(f"{self.processes_num} workers need as many sockets, got {len(sockets)}")

    def _process(self, index: int) -> Process:
        return Process(self.config, [self.sockets[index]])

    def init_processes(self) -> None:
        for index in range(self.processes_num):
            process = self._process(index)
            process.start()
            self.processes.append(process)

    def restart_all(self) -> None:
        """As uvicorn's (SIGHUP): each worker replaced by one ready on the same socket, then retired."""
        for index, old_process in enumerate(self.processes):
            if self.should_exit.is_set():
                return
            new_process = self._process(index)
            new_process.start()
            if not new_process.wait_until_ready(self.config.timeout_worker_healthcheck, self.should_exit):
                new_process.kill()
                new_process.join()
                if not self.should_exit.is_set():
                    logger.error("New child process [%s] was not ready in time; keeping worker [%s] and aborting "
                                 "the restart.", new_process.pid, old_process.pid)
                return
            old_process.terminate()
            old_process.join()
            self.processes[index] = new_process

    def keep_subprocess_alive(self) -> None:
        """As uvicorn's: a worker that died or hangs is replaced, on its socket; one that could not start
        stops the parent (it would fail the same way again)."""
        if self.should_exit.is_set():
            return
        for index, process in enumerate(self.processes):
            if process.is_alive(timeout=self.config.timeout_worker_healthcheck):
                continue
            process.kill()
            process.join()
            if process.exitcode == STARTUP_FAILURE:
                logger.error("Child process [%s] failed to start, stopping the parent process.", process.pid)
                self.should_exit.set()
                return
            if self.should_exit.is_set():
                return
            logger.info("Child process [%s] died", process.pid)
            replacement = self._process(index)
            replacement.start()
            self.processes[index] = replacement


def run(settings: Settings, *, workers: int = 1, sockets: list[socket.socket] | None = None) -> None:
    """Serve until stopped. Worker processes rebuild settings from the environment, so the caller
    exports the prepared paths (`export_settings`) first. `sockets`: already bound (`bind_sockets`,
    one per worker)."""
    export_settings(settings)
    options = dict(
        factory=True, workers=workers, host=settings.host, port=settings.port,
        http=ClientCertificateProtocol, ssl_certfile=str(settings.tls_cert), ssl_keyfile=str(settings.tls_key),
        ssl_context_factory=_ssl_factory, log_level="info", access_log=False, server_header=False, proxy_headers=False,
        timeout_keep_alive=30, log_config=LOG_CONFIG,
    )
    if sockets is None:
        uvicorn.run("gateway.asgi:create", **options)
        return
    config = uvicorn.Config("gateway.asgi:create", **options)
    try:
        if workers > 1:
            SocketPerWorker(config, sockets).run()
        else:
            uvicorn.Server(config).run(sockets=sockets)
    except KeyboardInterrupt:
        pass


def export_settings(settings: Settings) -> None:
    for name, value in settings.model_dump(exclude_none=True).items():
        os.environ[f"EPR_{name.upper()}"] = str(value)
