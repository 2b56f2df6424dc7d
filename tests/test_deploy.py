"""Deployment files parse, and their references agree (ports, paths, names, commands)."""

from __future__ import annotations

import shlex
from pathlib import Path

import yaml

from stylecast.cli import build_parser

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"


def _docs() -> dict[str, list[dict]]:
    return {p.name: [d for d in yaml.safe_load_all(p.read_text()) if d] for p in DEPLOY.rglob("*.y*ml")}


def test_every_yaml_parses():
    docs = _docs()
    assert {"docker-compose.yml", "triton.yaml", "sidecar.yaml"} <= set(docs)


def test_compose_mounts_the_repository_and_builds_the_sidecar():
    compose = _docs()["docker-compose.yml"][0]["services"]
    mount = compose["triton"]["volumes"][0].split(":")
    assert (DEPLOY / mount[0]).resolve() == (DEPLOY.parent / "model_repository").resolve() and mount[1] == "/models"
    assert "--model-repository=/models" in compose["triton"]["command"]
    assert (DEPLOY / compose["sidecar"]["build"]["context"] / compose["sidecar"]["build"]["dockerfile"]).exists()
    assert compose["triton"]["deploy"]["resources"]["reservations"]["devices"][0]["capabilities"] == ["gpu"]


def test_kubernetes_services_select_deployments_and_name_their_ports():
    for name in ("triton.yaml", "sidecar.yaml"):
        docs = _docs()[name]
        deployments = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Deployment"}
        for svc in (d for d in docs if d["kind"] == "Service"):
            dep = next(d for d in deployments.values()
                       if d["spec"]["template"]["metadata"]["labels"] == svc["spec"]["selector"])
            ports = {p["name"] for c in dep["spec"]["template"]["spec"]["containers"] for p in c["ports"]}
            assert {p["targetPort"] for p in svc["spec"]["ports"]} <= ports
            for c in dep["spec"]["template"]["spec"]["containers"]:
                for probe in ("readinessProbe", "livenessProbe"):
                    spec = c[probe]
                    port = (spec.get("httpGet") or spec.get("grpc"))["port"]
                    assert port in ports or port in {p["containerPort"] for p in c["ports"]}
        for hpa in (d for d in docs if d["kind"] == "HorizontalPodAutoscaler"):
            assert hpa["spec"]["scaleTargetRef"]["name"] in deployments


def test_sidecar_commands_are_valid_stylecast_commands():
    docs = _docs()
    args = docs["sidecar.yaml"][0]["spec"]["template"]["spec"]["containers"][0]["args"]
    dockerfile_cmd = next(line for line in (DEPLOY / "Dockerfile").read_text().splitlines() if line.startswith("CMD"))
    for argv in (args, yaml.safe_load(dockerfile_cmd[4:])):
        assert argv[0] == "stylecast"
        a = build_parser().parse_args(argv[1:])
        assert a.cmd == "serve" and a.model_repository == "" and a.host == "0.0.0.0" and a.sidecar
    ports = {p["containerPort"] for p in docs["sidecar.yaml"][0]["spec"]["template"]["spec"]["containers"][0]["ports"]}
    assert {int(args[args.index("--port") + 1]), int(args[args.index("--metrics-port") + 1])} == ports
    assert shlex.join(args)
