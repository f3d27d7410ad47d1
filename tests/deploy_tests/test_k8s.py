"""deploy/k8s/, checked without a cluster: the RayCluster and RayJob against KubeRay's CRD schemas
(../shared/kuberay, strict: an unknown field fails), core resources with `kubernetes-validate`, the
programs and key flags against what the topology test runs (as tests/deploy_tests/test_compose.py does for
compose), secrets only from the Secret, and ingress only from inside the namespace."""

from __future__ import annotations

import copy
import functools
import os
import re
import shlex
from pathlib import Path

import jsonschema
import kubernetes_validate
import pytest
import yaml

from tests.deploy_tests.test_compose import KEY_FLAGS, split_program, topology_commands

REPO = Path(__file__).resolve().parents[2]
K8S = REPO / "deploy" / "k8s"
OVERLAYS = sorted(p.name for p in (K8S / "overlays").iterdir())
EXAMPLES = sorted((K8S / "examples").glob("*.yaml"))
KUBERAY = Path(os.environ.get("STUDY_KUBERAY_CRDS", REPO.parent / "shared" / "kuberay"))
K8S_VERSION = "1.32.0"
SECRET = "study-secrets"


def load_kustomization(directory: Path) -> tuple[list[dict], dict[str, Path]]:
    """The resources a kustomization (and the ones it includes) lists, and its generated ConfigMaps
    by name -> file. The subset of kustomize we use: resources, namespace, configMapGenerator files."""
    spec = yaml.safe_load((directory / "kustomization.yaml").read_text())
    assert set(spec) <= {"apiVersion", "kind", "namespace", "resources", "configMapGenerator"}, set(spec)
    documents: list[dict] = []
    configmaps: dict[str, Path] = {}
    for entry in spec.get("resources", []):
        path = (directory / entry).resolve()
        if path.is_dir():
            more, more_maps = load_kustomization(path)
            documents += more
            configmaps.update(more_maps)
        else:
            documents += [doc for doc in yaml.safe_load_all(path.read_text()) if doc]
    for generator in spec.get("configMapGenerator", []):
        (file,) = generator["files"]
        assert (directory / file).is_file(), (directory, file)
        configmaps[generator["name"]] = directory / file
    for doc in documents:
        if spec.get("namespace") and doc["kind"] != "Namespace":
            doc.setdefault("metadata", {})["namespace"] = spec["namespace"]
    return documents, configmaps


BUILDS = {name: load_kustomization(K8S / "overlays" / name) for name in OVERLAYS}
ALL_DOCS = [doc for docs, _ in BUILDS.values() for doc in docs] + \
    [doc for path in EXAMPLES for doc in yaml.safe_load_all(path.read_text()) if doc]
CUSTOM_KINDS = {"RayCluster": "ray.io_rayclusters.yaml", "RayJob": "ray.io_rayjobs.yaml"}


def of_kind(kind: str, docs: list[dict] = ALL_DOCS) -> list[dict]:
    return [doc for doc in docs if doc["kind"] == kind]


def one(kind: str, name: str) -> dict:
    return next(doc for doc in ALL_DOCS if doc["kind"] == kind and doc["metadata"]["name"] == name)


def pod_specs(doc: dict) -> list[dict]:
    """Every pod template in a resource (Deployments, StatefulSets, RayCluster groups, RayJob submitter)."""
    spec = doc.get("spec", {})
    if doc["kind"] in ("Deployment", "StatefulSet"):
        return [spec["template"]]
    if doc["kind"] == "RayCluster":
        return [spec["headGroupSpec"]["template"], *(group["template"] for group in spec["workerGroupSpecs"])]
    if doc["kind"] == "RayJob":
        return [spec["submitterPodTemplate"]]
    return []


def containers(doc: dict) -> list[dict]:
    return [c for template in pod_specs(doc) for c in template["spec"]["containers"]]


# ---- schemas -----------------------------------------------------------------------------------------


def strict(schema: dict) -> dict:
    """The CRD schema with additionalProperties: false wherever it lists properties and does not keep
    unknown fields (the API server would prune an unknown field silently; here it fails)."""
    schema = copy.deepcopy(schema)

    def walk(node):
        if isinstance(node, dict):
            if "properties" in node and "additionalProperties" not in node \
                    and not node.get("x-kubernetes-preserve-unknown-fields"):
                node["additionalProperties"] = False
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(schema)
    return schema


@functools.cache
def crd_schema(kind: str) -> dict:
    path = KUBERAY / CUSTOM_KINDS[kind]
    if not path.exists():
        reason = f"KubeRay CRDs not found at {KUBERAY} (CI has them in ../shared/kuberay)"
        if os.environ.get("STUDY_REQUIRE_TOPOLOGY") == "1" or os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(f"CRD SCHEMA NOT TESTED: {reason}")
    crd = yaml.load(path.read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))  # 20k lines
    (version,) = [v for v in crd["spec"]["versions"] if v["name"] == "v1"]
    return strict(version["schema"]["openAPIV3Schema"])


def validator(kind: str) -> jsonschema.protocols.Validator:
    """No check of the (20k-line) schema itself each time: jsonschema.validate would spend seconds on it."""
    return jsonschema.Draft7Validator(crd_schema(kind))


@pytest.mark.parametrize("kind", sorted(CUSTOM_KINDS))
def test_kuberay_resources_validate_against_the_crd(kind):
    found = of_kind(kind)
    assert found, kind
    for doc in found:
        validator(kind).validate(doc)


def test_the_crd_schema_rejects_a_misspelt_field():
    broken = copy.deepcopy(one("RayCluster", "study"))
    broken["spec"]["workerGroupSpecs"][0]["maxReplica"] = 4
    with pytest.raises(jsonschema.ValidationError):
        validator("RayCluster").validate(broken)
    broken = copy.deepcopy(one("RayCluster", "study"))
    broken["spec"]["headGroupSpec"]["rayStartParams"]["num-cpus"] = 0  # must be a string
    with pytest.raises(jsonschema.ValidationError):
        validator("RayCluster").validate(broken)


def test_core_resources_validate_with_kubernetes_validate():
    core = [doc for doc in ALL_DOCS if doc["kind"] not in CUSTOM_KINDS]
    assert {doc["kind"] for doc in core} >= {"Namespace", "Deployment", "StatefulSet", "Service",
                                              "PersistentVolumeClaim", "NetworkPolicy"}
    for doc in core:
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
    broken = copy.deepcopy(one("Deployment", "coordinator"))
    broken["spec"]["template"]["spec"]["containers"][0]["envv"] = []
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, K8S_VERSION, strict=True)


def test_generated_configmaps_are_the_files_compose_mounts():
    for _, configmaps in BUILDS.values():
        for name, path in configmaps.items():
            original = REPO / "deploy" / path.name
            assert path.read_text() == original.read_text(), f"{path} differs from {original}"
    for build, (docs, configmaps) in BUILDS.items():  # every mounted ConfigMap is generated by the build
        mounted = {volume["configMap"]["name"] for doc in docs for template in pod_specs(doc)
                   for volume in template["spec"].get("volumes", []) if "configMap" in volume}
        assert mounted <= set(configmaps), (build, mounted - set(configmaps))
    assert set(BUILDS["in-cluster-postgres"][1]) == {"mlflow-auth", "postgres-init"}


# ---- the Ray cluster ---------------------------------------------------------------------------------


def test_raycluster_head_schedules_and_worker_groups_scale_with_a_gpu_group():
    cluster = one("RayCluster", "study")
    spec = cluster["spec"]
    assert spec["headGroupSpec"]["rayStartParams"]["num-cpus"] == "0"
    assert spec["enableInTreeAutoscaling"] is True
    groups = {group["groupName"]: group for group in spec["workerGroupSpecs"]}
    assert set(groups) == {"cpu", "gpu"}
    for group in groups.values():
        assert 0 <= group["minReplicas"] <= group["replicas"] <= group["maxReplicas"], group["groupName"]
    gpu = groups["gpu"]
    (container,) = gpu["template"]["spec"]["containers"]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == gpu["rayStartParams"]["num-gpus"] == "1"
    (cpu_container,) = groups["cpu"]["template"]["spec"]["containers"]
    assert "nvidia.com/gpu" not in cpu_container["resources"]["limits"]
    assert cpu_container["resources"]["limits"]["cpu"] == groups["cpu"]["rayStartParams"]["num-cpus"]


def ray_start_flags(params: dict[str, str]) -> dict[str, str | None]:
    """KubeRay turns rayStartParams into `ray start --key=value` (and adds --head/--block/--port)."""
    return {f"--{key}": value for key, value in params.items()}


def test_ray_nodes_start_with_the_key_flags_the_topology_test_uses():
    spec = one("RayCluster", "study")["spec"]
    _, local_head = split_program(topology_commands()["ray-head"])
    head = ray_start_flags(spec["headGroupSpec"]["rayStartParams"])
    assert "--num-cpus" in head and "--num-cpus" in local_head
    for group in spec["workerGroupSpecs"]:
        assert "--num-cpus" in ray_start_flags(group["rayStartParams"])
    # KubeRay passes --head, --block and --port 6379 itself; the flags it is given are ones `ray start` knows.
    _, local_worker = split_program(topology_commands()["ray-worker"])
    known = set(local_head) | set(local_worker) | {"--dashboard-host", "--num-gpus"}
    for params in [spec["headGroupSpec"]["rayStartParams"], *(g["rayStartParams"] for g in spec["workerGroupSpecs"])]:
        assert set(ray_start_flags(params)) <= known, set(ray_start_flags(params)) - known


# ---- the coordinator, MLflow, the RayJob --------------------------------------------------------------


def container_argv(container: dict) -> list[str]:
    """The container's main program. `sh -c "a && exec b"` runs b last, and b is the service."""
    argv = [*container.get("command", []), *container.get("args", [])]
    if argv[:2] == ["sh", "-c"]:
        argv = shlex.split(argv[2].split("&&")[-1].strip().removeprefix("exec "))
    return argv


@pytest.mark.parametrize(("deployment", "service"), [("mlflow", "mlflow"), ("coordinator", "coordinator")])
def test_services_run_what_the_topology_test_runs(deployment, service):
    (container,) = containers(one("Deployment", deployment))
    program, flags = split_program(container_argv(container))
    local_program, local_flags = split_program(topology_commands()[service])
    assert program == local_program
    assert KEY_FLAGS[service] <= set(flags), set(flags)
    assert set(flags) == set(local_flags), set(flags) ^ set(local_flags)


def test_deployment_settings_match_compose():
    (mlflow,) = containers(one("Deployment", "mlflow"))
    _, flags = split_program(container_argv(mlflow))
    assert flags["--app-name"] == "basic-auth" and flags["--workers"] == "1"
    env = {item["name"]: item for item in mlflow["env"]}
    assert env["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"]["value"] == "false"
    assert flags["--backend-store-uri"] == "$(MLFLOW_DATABASE_URI)"  # Kubernetes expands it from the Secret
    assert "secretKeyRef" in env["MLFLOW_DATABASE_URI"]["valueFrom"]
    (coordinator,) = containers(one("Deployment", "coordinator"))
    _, flags = split_program(container_argv(coordinator))
    assert flags["--tracking-uri"] == "http://mlflow:5000"
    assert flags["--address"] == "study-head-svc:6379"  # KubeRay names the head service <cluster>-head-svc
    joined = coordinator["command"][2]
    assert "ray start --address study-head-svc:6379 --num-cpus 0" in joined
    assert {item["name"] for item in coordinator["env"]} >= {"STUDY_API_TOKEN", "RAY_AUTH_TOKEN", "MLFLOW_TRACKING_PASSWORD"}


def test_rayjob_runs_study_submit_on_the_cluster():
    (job,) = of_kind("RayJob")
    assert job["spec"]["clusterSelector"] == {"ray.io/cluster": one("RayCluster", "study")["metadata"]["name"]}
    program, flags = split_program(shlex.split(job["spec"]["entrypoint"]))
    assert program == ("study", "submit", "/app/configs/quick.yaml")
    assert (REPO / "configs" / "quick.yaml").exists()  # the Dockerfile copies configs/ to /app/configs
    assert flags["--tracking-uri"] == "http://mlflow:5000" and "--wait" in flags


def test_only_the_head_and_coordinator_hold_the_mlflow_credential():
    cluster = one("RayCluster", "study")
    for group in cluster["spec"]["workerGroupSpecs"]:
        for container in group["template"]["spec"]["containers"]:
            assert not {item["name"] for item in container.get("env", [])} & {"MLFLOW_TRACKING_PASSWORD", "OPTUNA_STORAGE"}


# ---- secrets and reachability ------------------------------------------------------------------------

SENSITIVE = re.compile(r"PASSWORD|TOKEN|SECRET|_KEY$|DATABASE_URI|STORAGE", re.I)


def env_entries(doc: dict) -> list[dict]:
    entries = [item for c in containers(doc) for item in c.get("env", [])]
    if doc["kind"] == "RayCluster":
        entries += doc["spec"].get("autoscalerOptions", {}).get("env", [])
    return entries


def secret_keys_in_readme() -> set[str]:
    text = (REPO / "README.md").read_text()
    command = re.search(r"kubectl -n study create secret generic study-secrets(.*?)\n\n", text, re.S)
    assert command, "README: the kubectl command that creates the Secret"
    return set(re.findall(r"--from-literal=([a-z-]+)=", command.group(1)))


def test_secrets_come_from_the_secret_only():
    assert not of_kind("Secret"), "no Secret manifest: values never live in the repository"
    used = set()
    for doc in ALL_DOCS:
        for item in env_entries(doc):
            if SENSITIVE.search(item["name"]):
                ref = item.get("valueFrom", {}).get("secretKeyRef")
                assert ref and ref["name"] == SECRET, (doc["metadata"]["name"], item)
                used.add(ref["key"])
    assert used == secret_keys_in_readme()


def test_services_stay_inside_the_namespace():
    for build, (docs, _) in BUILDS.items():
        for service in of_kind("Service", docs):
            assert service["spec"].get("type", "ClusterIP") == "ClusterIP", (build, service["metadata"]["name"])
        policies = of_kind("NetworkPolicy", docs)
        deny = [p for p in policies if p["spec"]["podSelector"] == {} and "ingress" not in p["spec"]]
        assert deny and deny[0]["spec"]["policyTypes"] == ["Ingress"], build
        components = {template["metadata"]["labels"]["app.kubernetes.io/component"]
                      for doc in docs for template in pod_specs(doc)}
        opened = {p["spec"]["podSelector"].get("matchLabels", {}).get("app.kubernetes.io/component") for p in policies}
        assert components <= opened, (build, components - opened)
        for policy in policies:
            for rule in policy["spec"].get("ingress", []):
                for source in rule["from"]:
                    assert "ipBlock" not in source, policy["metadata"]["name"]
                    # Other namespaces only for the KubeRay operator's status polls on the dashboard port.
                    if "namespaceSelector" in source:
                        assert policy["metadata"]["name"] == "ray-dashboard-from-operator"
                        assert [p["port"] for p in rule["ports"]] == [8265]
