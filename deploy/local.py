"""The whole platform on a developer machine, in the foreground: ``make run``.

    .venv/bin/python -m deploy.local

1. The broker at ``AMQP_URI`` (default amqp://guest:guest@127.0.0.1:5672/): checked with a
   short timeout, and the topology declared (``services.common.amqp.declare_topology``).
   Unreachable, it says what it tried and how to get RabbitMQ, and exits 2 rather than hang.
2. The store: with ``MONGO_URI`` unset, starts the embedded SecantusDB (``secantusd-py``
   from the virtualenv, 127.0.0.1:``STORE_PORT`` (27117), data under ``STORE_PATH``
   (``var/secantus``, git-ignored)) and waits until it answers a ping. With ``MONGO_URI``
   set, uses that and starts no store.
3. Runs the lines of ``deploy/Procfile`` (read with honcho) whose
   ``services/<name>/service.py`` exists (the HTTP edge on ``GATEWAY_ADDRESS``,
   127.0.0.1:8000), in the foreground, each a process of its own, their output prefixed
   with their name as honcho prints it. A service that dies is restarted, with a line
   saying which died, how, and when it restarts (after 1 s, longer each time it dies
   again soon after its start); the others and the store run on. In production the
   orchestrator restarts it. Ctrl-C or SIGTERM stops them (SIGTERM to each, SIGKILL after
   5 s), then the store, which stops last so that services can finish their writes. With
   the mediation service, the sample mediation organizations are registered
   (``MEDIATION_ORGANIZATIONS``) and the simulator that plays them runs beside the
   services on 127.0.0.1:8100, where their urls point (unless that port is taken).
"""
from __future__ import annotations

import datetime
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
from contextlib import suppress
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from honcho.colour import get_colours
from honcho.environ import parse_procfile
from honcho.printer import Message, Printer

from services.common.config import Settings

ROOT = Path(__file__).resolve().parents[1]
PROCFILE = ROOT / "deploy" / "Procfile"
BIN = Path(sys.executable).parent  # the virtualenv's bin: python, secantusd-py
DEFAULT_AMQP_URI = "amqp://guest:guest@127.0.0.1:5672/"
DEFAULT_STORE_PORT = 27117
DEFAULT_STORE_PATH = "var/secantus"
# The simulated mediation organizations: the sample file's urls point at this address.
MEDIATOR_ADDRESS = "127.0.0.1:8100"
SAMPLE_ORGANIZATIONS = ROOT / "services" / "mediation" / "data" / "organizations.yaml"
BROKER_TIMEOUT = 3.0
STORE_TIMEOUT = 30.0
# Seconds before a dead service is started again, by how often it died in a row; a
# service up for STEADY seconds starts its count again.
RESTART_DELAYS = (1.0, 2.0, 5.0, 10.0, 30.0)
STEADY = 60.0
KILL_WAIT = 5.0

HOW_TO_GET_RABBITMQ = """\
The platform needs RabbitMQ 3.x. Either
  - install it:     sudo apt-get install rabbitmq-server && sudo rabbitmq-server -detached
  - or run it:      docker run -d --name rabbitmq -p 5672:5672 rabbitmq:3
or point AMQP_URI at one you have (amqp://user:password@host:5672/vhost)."""


class Abort(Exception):
    """A reason to stop before anything runs; the message is for the person at the terminal."""

    def __init__(self, message: str, code: int = 2):
        super().__init__(message)
        self.code = code


def redact(uri: str) -> str:
    """The URI with its password hidden, fit to print."""
    parts = urlsplit(uri)
    if parts.password is None:
        return uri
    netloc = f"{parts.username}:***@{parts.hostname}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


def procfile_entries(procfile: Path = PROCFILE) -> dict[str, str]:
    return dict(parse_procfile(procfile.read_text(encoding="utf-8")).processes)


def service_module(command: str) -> str | None:
    """The module a Procfile command runs (the argument after ``services.common.runner``)."""
    words = command.split()
    if "services.common.runner" in words:
        index = words.index("services.common.runner")
        return words[index + 1] if index + 1 < len(words) else None
    return None


def module_path(module: str, root: Path = ROOT) -> Path:
    return root.joinpath(*module.split(".")).with_suffix(".py")


def present_services(entries: dict[str, str], root: Path = ROOT) -> dict[str, str]:
    """The Procfile lines whose service module exists in this tree."""
    return {name: command for name, command in entries.items()
            if (module := service_module(command)) and module_path(module, root).is_file()}


def port_taken(host: str, port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


def split_address(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    return host or "127.0.0.1", int(port)


def check_broker(amqp_uri: str, retry_delays, timeout: float = BROKER_TIMEOUT) -> None:
    """Connect once, declare the topology, or raise ``Abort`` saying what went wrong."""
    from amqp.exceptions import AMQPError
    from kombu import Connection

    from services.common import amqp

    try:
        with Connection(amqp_uri, connect_timeout=timeout) as connection:
            connection.ensure_connection(max_retries=1, interval_start=0, interval_step=0, timeout=timeout)
            amqp.declare_topology(connection, retry_delays)
    except AMQPError as exc:  # it answered, and said no
        raise Abort(f"RabbitMQ at {redact(amqp_uri)} (AMQP_URI) refused the connection: {exc}\n"
                    f"Check the user, the password and the vhost in AMQP_URI "
                    f"(a vhost is created with: rabbitmqctl add_vhost <name>).") from exc
    except Exception as exc:  # noqa: BLE001 - any other failure here means: no broker there
        raise Abort(f"Cannot reach RabbitMQ at {redact(amqp_uri)} "
                    f"(AMQP_URI; tried for {timeout:g}s): {type(exc).__name__}: {exc}\n"
                    f"{HOW_TO_GET_RABBITMQ}") from exc


class Store:
    """The embedded SecantusDB server, a child of ours in a session of its own (Ctrl-C at
    the terminal does not reach it; we stop it after the services)."""

    def __init__(self, port: int, path: str, printer: Printer):
        self.port = port
        self.path = path
        self.printer = printer
        self.process: subprocess.Popen | None = None
        self.uri = f"mongodb://127.0.0.1:{port}/?directConnection=true"

    def command(self) -> list[str]:
        return [str(BIN / "secantusd-py"), "--host", "127.0.0.1", "--port", str(self.port),
                "--storage-path", self.path, "--log-level", os.environ.get("STORE_LOG_LEVEL", "WARNING")]

    def start(self) -> None:
        if port_taken("127.0.0.1", self.port):
            raise Abort(f"Port {self.port} on 127.0.0.1 is taken (another `make run`, or another server?).\n"
                        f"Stop it, or choose another port with STORE_PORT=..., "
                        f"or use a MongoDB you have with MONGO_URI=...")
        if self.path != ":memory:":
            Path(self.path).mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(self.command(), cwd=ROOT, stdout=subprocess.PIPE,
                                        stderr=subprocess.STDOUT, start_new_session=True)
        threading.Thread(target=self._echo, name="store-output", daemon=True).start()

    def _echo(self) -> None:
        for line in iter(self.process.stdout.readline, b""):
            self.printer.write(Message(type="line", data=line, time=datetime.datetime.now(), name="store",
                                       colour=None))

    def wait_ready(self, timeout: float = STORE_TIMEOUT) -> None:
        import pymongo

        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                raise Abort(f"The store (secantusd-py) exited with code {self.process.returncode} "
                            f"before it answered; its output is above.")
            client = pymongo.MongoClient(self.uri, serverSelectionTimeoutMS=500, connectTimeoutMS=500)
            try:
                client.admin.command("ping")
                return
            except pymongo.errors.PyMongoError:
                if time.monotonic() > deadline:
                    raise Abort(f"The store did not answer a ping on {self.uri} within {timeout:g}s.") from None
            finally:
                client.close()
            time.sleep(0.1)

    def stop(self, timeout: float = 15.0) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(5)


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def how_it_ended(returncode: int) -> str:
    if returncode < 0:
        try:
            return f"killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"killed by signal {-returncode}"
    return f"exited with code {returncode}"


def restart_delay(deaths_in_a_row: int) -> float:
    return RESTART_DELAYS[min(deaths_in_a_row, len(RESTART_DELAYS)) - 1]


class Supervised:
    """One service's process, as the supervisor runs it again and again."""

    def __init__(self, name: str, command: str, colour):
        self.name = name
        self.command = command
        self.colour = colour
        self.process: subprocess.Popen | None = None
        self.started_at = 0.0
        self.deaths_in_a_row = 0
        self.restart_at: float | None = None


class Supervisor:
    """Runs the services in the foreground and restarts the one that dies, until a
    signal asks every one to stop."""

    def __init__(self, services: dict[str, str], env: dict, printer: Printer):
        colours = get_colours()
        self.services = [Supervised(name, command, next(colours)) for name, command in services.items()]
        self.env = env
        self.printer = printer
        self.lines: queue.Queue = queue.Queue()
        self.stop_signal: str | None = None

    def say(self, text: str) -> None:
        self.lines.put(Message(type="line", data=text, time=datetime.datetime.now(), name="system", colour=None))

    def start(self, service: Supervised) -> None:
        # exec: the service replaces the shell, so its own exit is what we see
        service.process = subprocess.Popen(["/bin/sh", "-c", f"exec {service.command}"], env=self.env, cwd=ROOT,
                                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
        service.started_at = time.monotonic()
        service.restart_at = None
        threading.Thread(target=self._echo, args=(service, service.process), name=f"{service.name}-output",
                         daemon=True).start()
        self.say(f"{service.name} started (pid={service.process.pid})")

    def _echo(self, service: Supervised, process: subprocess.Popen) -> None:
        for line in iter(process.stdout.readline, b""):
            self.lines.put(Message(type="line", data=line, time=datetime.datetime.now(), name=service.name,
                                   colour=service.colour))

    def _on_signal(self, signum, frame) -> None:
        if self.stop_signal is None:
            self.stop_signal = signal.Signals(signum).name
            self.say(f"{self.stop_signal} received")

    def run(self) -> int:
        """Until SIGINT or SIGTERM; then stop every service. The exit code honcho gave."""
        signal.signal(signal.SIGINT, self._on_signal)
        signal.signal(signal.SIGTERM, self._on_signal)
        for service in self.services:
            self.start(service)
        while self.stop_signal is None:
            self._watch()
            self._print(timeout=0.2)
        self._stop_all()
        return 130 if self.stop_signal == "SIGINT" else 143

    def _watch(self) -> None:
        now = time.monotonic()
        for service in self.services:
            if service.restart_at is not None:
                if now >= service.restart_at:
                    self.start(service)
                continue
            returncode = service.process.poll()
            if returncode is None:
                continue
            lived = now - service.started_at
            service.deaths_in_a_row = 1 if lived >= STEADY else service.deaths_in_a_row + 1
            delay = restart_delay(service.deaths_in_a_row)
            service.restart_at = now + delay
            again = f", {service.deaths_in_a_row} times in a row" if service.deaths_in_a_row > 1 else ""
            self.say(f"{service.name} (pid={service.process.pid}) died: {how_it_ended(returncode)} after "
                     f"{lived:.0f} s{again}; restarting it in {delay:g} s (the other services run on)")

    def _print(self, timeout: float) -> None:
        try:
            self.printer.write(self.lines.get(timeout=timeout))
            while True:
                self.printer.write(self.lines.get_nowait())
        except queue.Empty:
            return

    def _stop_all(self) -> None:
        running = [s for s in self.services
                   if s.process is not None and s.restart_at is None and s.process.poll() is None]
        for service in running:
            self.say(f"sending SIGTERM to {service.name} (pid {service.process.pid})")
            with suppress(ProcessLookupError):
                os.killpg(service.process.pid, signal.SIGTERM)
        deadline = time.monotonic() + KILL_WAIT
        while any(s.process.poll() is None for s in running) and time.monotonic() < deadline:
            self._print(timeout=0.1)
        for service in running:
            if service.process.poll() is None:
                self.say(f"sending SIGKILL to {service.name} (pid {service.process.pid})")
                with suppress(ProcessLookupError):
                    os.killpg(service.process.pid, signal.SIGKILL)
            service.process.wait()
            self.say(f"{service.name} stopped ({how_it_ended(service.process.returncode)})")
        self._print(timeout=0.1)


def banner(gateway: str, store_uri: str, store_note: str, amqp_uri: str, services: list[str],
           mediator: str | None = None) -> str:
    python = os.path.relpath(sys.executable, Path.cwd()) if sys.executable.startswith(str(ROOT)) else sys.executable
    lines = [
        "Complaints platform, local run",
        f"  HTTP edge  http://{gateway}  (GET /health, GET /api/v1/openapi.json)",
        f"  store      {store_uri}  ({store_note})",
        f"  broker     {redact(amqp_uri)}",
        f"  services   {', '.join(services)}",
        f"  token      {python} -m services.gateway.tokens <user>   (--list shows the sample users)",
    ]
    if mediator:
        lines.append(f"  mediator   {mediator}")
    return "\n".join([*lines, "  stop       Ctrl-C", ""])


def mediator_command(gateway: str) -> str:
    """The simulator playing the sample organizations: it takes each referral and accepts it."""
    return (f"python -m services.mediation.simulator --listen {MEDIATOR_ADDRESS} --platform http://{gateway} "
            f"--organizations {SAMPLE_ORGANIZATIONS} --plan accepted --pace 2")


def main() -> int:
    signal.signal(signal.SIGTERM, _interrupt)  # until the supervisor takes over: clean up the same way
    env = dict(os.environ)
    amqp_uri = env.get("AMQP_URI", DEFAULT_AMQP_URI)
    gateway = env.get("GATEWAY_ADDRESS", "127.0.0.1:8000")
    colour = sys.stdout.isatty()
    printer = Printer(sys.stdout, colour=colour)
    printer.width = 9
    store: Store | None = None
    try:
        services = present_services(procfile_entries())
        if "gateway" in services and port_taken(*split_address(gateway)):
            raise Abort(f"The HTTP edge's address {gateway} is taken; free it or set GATEWAY_ADDRESS=host:port.")
        # First: without a broker, nothing else is worth starting.
        check_broker(amqp_uri, Settings.from_env(env).retry_delays)
        if env.get("MONGO_URI"):
            store_uri, store_note = env["MONGO_URI"], "MONGO_URI, no embedded store started"
        else:
            store_path = env.get("STORE_PATH", DEFAULT_STORE_PATH)
            store = Store(int(env.get("STORE_PORT", DEFAULT_STORE_PORT)), store_path, printer)
            print(f"Starting the embedded store (SecantusDB) on 127.0.0.1:{store.port} ...", flush=True)
            store.start()
            store.wait_ready()
            store_uri, store_note = store.uri, f"embedded SecantusDB, data in {store_path}"
        mediator = None
        if "mediation" in services:
            if port_taken(*split_address(MEDIATOR_ADDRESS)):
                mediator = (f"not started: {MEDIATOR_ADDRESS} is taken; referrals to the sample organizations "
                            "wait for it (nothing is lost)")
            else:
                mediator = (f"http://{MEDIATOR_ADDRESS}  (simulated sample organizations; "
                            "python -m services.mediation.simulator --help)")
        print(banner(gateway, store_uri, store_note, amqp_uri, list(services), mediator), flush=True)

        child_env = dict(env, MONGO_URI=store_uri, AMQP_URI=amqp_uri, GATEWAY_ADDRESS=gateway,
                         PYTHONUNBUFFERED="1", PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}")
        child_env.setdefault("MEDIATION_ORGANIZATIONS", str(SAMPLE_ORGANIZATIONS))
        supervised = dict(services)
        if mediator and mediator.startswith("http"):
            supervised["mediator"] = mediator_command(gateway)
        return Supervisor(supervised, child_env, printer).run()
    except Abort as exc:
        print(f"\n{exc}", file=sys.stderr, flush=True)
        return exc.code
    except KeyboardInterrupt:
        return 130
    finally:
        if store is not None:
            store.stop()


if __name__ == "__main__":
    sys.exit(main())
