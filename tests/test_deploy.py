"""Deployment files parse, and their references agree (ports, paths, names, commands)."""

from __future__ import annotations

import shlex
from pathlib import Path

import yaml

from stylecast.cli import build_parser

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"


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
    """The Dockerfile's, compose's and Kubernetes' sidecar commands parse; the last two forward Triton's
    models (--upstream at its gRPC port under its service name)."""
    docs = _docs()
    args = docs["sidecar.yaml"][0]["spec"]["template"]["spec"]["containers"][0]["args"]
    compose = docs["docker-compose.yml"][0]["services"]["sidecar"]["command"]
    dockerfile_cmd = next(line for line in (DEPLOY / "Dockerfile").read_text().splitlines() if line.startswith("CMD"))
    for argv in (args, compose, yaml.safe_load(dockerfile_cmd[4:])):
        assert argv[0] == "stylecast"
        a = build_parser().parse_args(argv[1:])
        assert a.cmd == "serve" and a.model_repository == "" and a.host == "0.0.0.0" and a.sidecar
    triton_service = next(d["metadata"]["name"] for d in docs["triton.yaml"] if d["kind"] == "Service")
    assert build_parser().parse_args(args[1:]).upstream == f"{triton_service}:8001"
    assert build_parser().parse_args(compose[1:]).upstream == "triton:8001"
    ports = {p["containerPort"] for p in docs["sidecar.yaml"][0]["spec"]["template"]["spec"]["containers"][0]["ports"]}
    assert {int(args[args.index(k) + 1]) for k in ("--port", "--http-port", "--metrics-port")} == ports
    assert shlex.join(args)


def test_triton_is_the_version_the_conformance_suite_tests():
    """Compose and Kubernetes run one Triton image: 24.10, whose Triton (2.51) is the one of the nvidia-pytriton
    wheel setup.sh installs for the conformance suite."""
    images = {_docs()["docker-compose.yml"][0]["services"]["triton"]["image"]}
    images |= {c["image"] for d in _docs()["triton.yaml"] if d["kind"] == "Deployment"
               for c in d["spec"]["template"]["spec"]["containers"]}
    assert images == {"nvcr.io/nvidia/tritonserver:24.10-py3"}
    assert "nvidia-pytriton==0.7.0" in (ROOT / "setup.sh").read_text()  # bundles tritonserver 2.51 (24.10)
    claims = {v["persistentVolumeClaim"]["claimName"] for d in _docs()["triton.yaml"] if d["kind"] == "Deployment"
              for v in d["spec"]["template"]["spec"]["volumes"] if "persistentVolumeClaim" in v}
    defined = {d["metadata"]["name"] for d in _docs()["triton.yaml"] if d["kind"] == "PersistentVolumeClaim"}
    assert claims <= defined
    rule = yaml.safe_load(_docs()["prometheus-adapter.yaml"][0]["data"]["config.yaml"])["rules"][0]
    hpa = next(d for d in _docs()["triton.yaml"] if d["kind"] == "HorizontalPodAutoscaler")
    assert rule["name"]["as"] == hpa["spec"]["metrics"][0]["pods"]["metric"]["name"]


def test_production_config_options(tmp_path, capsys):
    """`stylecast configure` writes a config that parses as Triton's ModelConfig, with the TensorRT accelerator,
    pinned profiles, GPU instances and warm-up; a profile beyond max_batch_size is refused."""
    import shutil

    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2 as mc

    from stylecast.cli import main

    model = tmp_path / "starter8"
    shutil.copytree(ROOT / "model_repository" / "starter8", model)
    assert main(["configure", str(model), "--instance-kind", "gpu", "--instances", "2", "--tensorrt",
                 "--max-batch-size", "32", "--trt-shapes", "1x256x256,8x512x512,32x1080x1920",
                 "--warmup", "512x512"]) == 0
    cfg = text_format.Parse((model / "config.pbtxt").read_text(), mc.ModelConfig())
    assert cfg.max_batch_size == 32 and cfg.instance_group[0].kind == mc.ModelInstanceGroup.KIND_GPU
    assert cfg.instance_group[0].count == 2
    trt = cfg.optimization.execution_accelerators.gpu_execution_accelerator[0]
    assert trt.name == "tensorrt" and trt.parameters["precision_mode"] == "FP16"
    assert trt.parameters["trt_layer_norm_fp32_fallback"] == "true"
    assert trt.parameters["trt_profile_max_shapes"] == "image:32x1080x1920x3,style_weights:32x8"
    warm = cfg.model_warmup[0]
    assert list(warm.inputs["image"].dims) == [512, 512, 3] and list(warm.inputs["style_weights"].dims) == [8]
    import numpy as np

    from stylecast.contract import style_weights_problem

    weights = np.frombuffer((model / "warmup" / warm.inputs["style_weights"].input_data_file).read_bytes(), np.float32)
    assert weights.shape == (8,) and style_weights_problem(weights) is None  # a blend a client may send too
    assert main(["configure", str(model), "--tensorrt", "--trt-shapes", "1x64x64,8x64x64,64x64x64"]) == 1
    assert "exceeds max_batch_size 32" in capsys.readouterr().err  # a one-line error, no traceback
    assert main(["configure", str(model)]) == 0  # back to plain: no accelerator block left behind
    assert "optimization" not in (model / "config.pbtxt").read_text()


def test_the_docker_build_context_leaves_out_environments_and_history():
    """The files `docker build -f deploy/Dockerfile .` would send, as the Docker SDK computes them from
    .dockerignore: the package and the models, not .venv (2 GB), .venv-triton or .git."""
    from docker.utils.build import exclude_paths

    patterns = [line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()
                if line.strip() and not line.startswith("#")]
    sent = exclude_paths(str(ROOT), patterns, dockerfile="deploy/Dockerfile")
    tops = {p.split("/")[0] for p in sent}
    assert not tops & {".git", ".venv", ".venv-triton", "runs", "data", "tests"}, sorted(tops)
    assert {"server", "client", "stylecast", "pyproject.toml", "model_repository", "checkpoints"} <= tops
    assert "deploy/Dockerfile" in sent and "server/web/index.html" in sent
