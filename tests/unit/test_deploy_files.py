"""The production files of deploy/ hold together: every YAML parses, every manifest is
named, every service that exists ships in the Procfile, compose and Kubernetes, each runs
a module that exists, from the one image, with the environment it needs."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
import yaml

from deploy import local, probe

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
RUNNER = ["python", "-m", "services.common.runner"]
INFRASTRUCTURE = {"rabbitmq", "mongo"}


def load_all(path: Path) -> list[dict]:
    with open(path, encoding="utf-8") as handle:
        return [doc for doc in yaml.safe_load_all(handle) if doc is not None]


def yaml_files() -> list[Path]:
    return sorted(DEPLOY.rglob("*.yaml")) + sorted(DEPLOY.rglob("*.yml"))


def manifests() -> list[tuple[str, dict]]:
    return [(path.name, doc) for path in sorted((DEPLOY / "k8s").glob("*.yaml")) for doc in load_all(path)]


def deployments() -> dict[str, dict]:
    return {doc["metadata"]["name"]: doc for _, doc in manifests() if doc["kind"] == "Deployment"}


def compose() -> dict:
    [doc] = load_all(DEPLOY / "compose.yaml")
    return doc


def existing_services() -> list[str]:
    return sorted(path.parent.name for path in (ROOT / "services").glob("*/service.py"))


def runner_module(command: list[str]) -> str:
    assert command[:3] == RUNNER, f"{command} does not start a service through services.common.runner"
    assert len(command) == 4, command
    assert re.fullmatch(r"services\.[a-z_]+\.service", command[3]), command
    return command[3]


def require_module(module: str) -> None:
    """The module's package must exist; a service still being written is skipped, not passed."""
    package = ROOT.joinpath(*module.split(".")[:-1])
    assert (package / "__init__.py").is_file(), f"{module}: no package {package.relative_to(ROOT)}"
    if not local.module_path(module).is_file():
        pytest.skip(f"{module} is not written yet (its package exists)")


def container(deployment: dict) -> dict:
    [only] = deployment["spec"]["template"]["spec"]["containers"]
    return only


@pytest.mark.parametrize("path", yaml_files(), ids=lambda p: str(p.relative_to(DEPLOY)))
def test_every_yaml_file_parses(path):
    assert load_all(path), f"{path} holds no document"


@pytest.mark.parametrize("name,doc", manifests(), ids=lambda v: v if isinstance(v, str) else v.get("kind"))
def test_every_manifest_is_named(name, doc):
    assert doc.get("apiVersion"), name
    assert doc.get("kind"), name
    assert doc.get("metadata", {}).get("name"), name
    if doc["kind"] != "Namespace":
        assert doc["metadata"].get("namespace") == "complaints", name


@pytest.mark.parametrize("name", sorted(deployments()))
def test_every_deployment_runs_a_service_module_from_the_one_image(name):
    deployment = deployments()[name]
    spec = deployment["spec"]
    assert spec["selector"]["matchLabels"].items() <= spec["template"]["metadata"]["labels"].items()
    main = container(deployment)
    assert main["image"].rsplit(":", 1)[0].endswith("/complaints-platform")
    module = runner_module(main["command"])
    assert name == f"complaints-{module.split('.')[1]}"
    sources = {ref[kind]["name"] for ref in main["envFrom"] for kind in ref}
    assert sources == {"complaints-config", "complaints-secrets"}
    assert main["resources"]["requests"]["cpu"] and main["resources"]["requests"]["memory"]
    assert main["resources"]["limits"]["memory"]
    assert main["readinessProbe"] and main["livenessProbe"]
    for kind in ("startupProbe", "readinessProbe", "livenessProbe"):
        command = main.get(kind, {}).get("exec", {}).get("command")
        if command:
            assert command[:3] == ["python", "-m", "deploy.probe"] and command[3] in ("live", "ready")
    pod = spec["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert main["securityContext"]["allowPrivilegeEscalation"] is False
    require_module(module)


def test_intake_runs_at_least_two_replicas():
    assert deployments()["complaints-intake"]["spec"]["replicas"] >= 2


def test_the_gateway_has_a_service_and_http_probes():
    gateway = deployments()["complaints-gateway"]
    main = container(gateway)
    assert main["readinessProbe"]["httpGet"]["path"].startswith("/health")
    [service] = [doc for _, doc in manifests() if doc["kind"] == "Service"
                 and doc["metadata"]["name"] == "complaints-gateway"]
    labels = gateway["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= labels.items()
    assert {port["targetPort"] for port in service["spec"]["ports"]} <= {"http", 8000}
    assert any(port["containerPort"] == 8000 for port in main["ports"])


def test_the_environment_names_a_replica_set_with_majority_writes():
    [config] = [doc for _, doc in manifests() if doc["kind"] == "ConfigMap"]
    [secret] = [doc for _, doc in manifests() if doc["kind"] == "Secret"]
    assert config["metadata"]["name"] == "complaints-config"
    assert secret["metadata"]["name"] == "complaints-secrets"
    values = secret["stringData"]
    assert {"AMQP_URI", "MONGO_URI", "JWT_SECRET"} <= values.keys()
    query = parse_qs(urlsplit(values["MONGO_URI"]).query)
    assert query["replicaSet"] == ["rs0"] and query["w"] == ["majority"]
    assert urlsplit(values["AMQP_URI"]).scheme in ("amqp", "amqps")
    assert config["data"]["GATEWAY_ADDRESS"].startswith("0.0.0.0:")
    assert not {"AMQP_URI", "MONGO_URI", "JWT_SECRET"} & config["data"].keys(), "credentials belong in the Secret"


@pytest.mark.parametrize("name", sorted(set(compose()["services"]) - INFRASTRUCTURE))
def test_every_compose_service_builds_the_image_and_runs_a_module(name):
    service = compose()["services"][name]
    assert service["build"]["context"] == ".."
    assert (DEPLOY / ".." / service["build"]["dockerfile"]).resolve() == DEPLOY / "Dockerfile"
    assert service["image"].startswith("complaints-platform:")
    assert service["restart"] in ("always", "unless-stopped", "on-failure")
    assert service["healthcheck"]["test"]
    assert {"rabbitmq", "mongo"} <= set(service["depends_on"])
    environment = service["environment"]
    assert {"AMQP_URI", "MONGO_URI", "JWT_SECRET"} <= environment.keys()
    assert parse_qs(urlsplit(environment["MONGO_URI"]).query)["replicaSet"] == ["rs0"]
    module = runner_module(service["command"])
    assert module.split(".")[1] == name
    require_module(module)


def test_compose_runs_rabbitmq_3_and_a_mongodb_replica_set():
    services = compose()["services"]
    assert services["rabbitmq"]["image"].startswith("rabbitmq:3")
    mongo = services["mongo"]
    assert mongo["image"].startswith("mongo:7")
    assert mongo["command"][mongo["command"].index("--replSet") + 1] == "rs0"
    assert "rs.initiate" in " ".join(mongo["healthcheck"]["test"])
    assert compose()["services"]["intake"]["deploy"]["replicas"] >= 2


@pytest.mark.parametrize("service", existing_services())
def test_every_service_ships_everywhere(service):
    module = f"services.{service}.service"
    assert f"complaints-{service}" in deployments(), f"no Kubernetes Deployment for {module}"
    assert service in compose()["services"], f"no compose service for {module}"
    procfile = local.procfile_entries()
    assert local.service_module(procfile.get(service, "")) == module, f"no Procfile line for {module}"


def test_every_procfile_line_runs_a_service_through_the_runner():
    for name, command in local.procfile_entries().items():
        assert local.service_module(command) == f"services.{name}.service", command
        assert command.split()[:3] == RUNNER, command


def test_the_dockerfile_builds_one_non_root_image_with_the_runtime_requirements():
    text = (DEPLOY / "Dockerfile").read_text()
    assert re.search(r"^FROM python:3\.11-slim", text, re.M)
    users = re.findall(r"^USER (\S+)", text, re.M)
    assert users and users[-1].split(":")[0] not in ("root", "0")
    assert "services.common.runner" in text and "${SERVICE}" in text
    copied = re.findall(r"^COPY (?:--\S+ )*(.+) \S+$", text, re.M)
    sources = {source for line in copied for source in line.split()}
    assert {"services/", "deploy/probe.py", "requirements.txt"} <= sources
    # What the RUN line keeps of requirements.txt: the "# Runtime" block, without the tests' tools.
    lines = (ROOT / "requirements.txt").read_text().splitlines()
    start = lines.index("# Runtime")
    end = next(i for i, line in enumerate(lines) if line.startswith("# Local run"))
    runtime = {re.split(r"[=<>]", line)[0] for line in lines[start:end + 1] if line and not line.startswith("#")}
    assert {"nameko", "eventlet", "kombu", "pymongo", "marshmallow", "PyYAML"} <= runtime
    assert not {"pytest", "SecantusDB", "honcho", "ruff"} & runtime


def test_docker_compose_accepts_the_file():
    docker = shutil.which("docker")
    if docker is None:
        pytest.skip("no docker client on this machine")
    version = subprocess.run([docker, "compose", "version"], capture_output=True, text=True, timeout=30)
    if version.returncode != 0:
        reason = (version.stderr or version.stdout).strip().splitlines()[:1]
        pytest.skip(f"the docker client has no compose plugin ({' '.join(reason)})")
    result = subprocess.run([docker, "compose", "-f", str(DEPLOY / "compose.yaml"), "config", "-q"],
                            capture_output=True, text=True, timeout=60,
                            env=dict(os.environ, JWT_SECRET="validation-only"))
    assert result.returncode == 0, result.stderr


def test_the_probe_counts_established_connections_to_the_broker(tmp_path):
    table = tmp_path / "tcp"
    header = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n"
    table.write_text(header
                     + "   0: 0100007F:A1B2 0100007F:1628 01 00000000:00000000 00:00000000 00000000 1000 0 1\n"
                     + "   1: 0100007F:A1B3 0100007F:1628 06 00000000:00000000 00:00000000 00000000 1000 0 2\n"
                     + "   2: 0100007F:A1B4 0100007F:69CD 01 00000000:00000000 00:00000000 00000000 1000 0 3\n")
    assert probe.established_to(5672, (str(table),)) == 1  # 0x1628; the TIME_WAIT one does not count
    assert probe.established_to(5671, (str(table), str(tmp_path / "missing"))) == 0
    assert probe.broker_port("amqp://u:p@rabbitmq/complaints") == 5672
    assert probe.broker_port("amqps://u:p@rabbitmq/complaints") == 5671
    assert probe.broker_port("amqp://u:p@rabbitmq:5673/") == 5673
