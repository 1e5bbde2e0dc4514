"""Offline checks of the Kubernetes objects and the image recipe in ``deploy/``.

Two layers:

* schema validation with ``kubernetes-validate`` (PyPI), which ships the OpenAPI schemas of
  each Kubernetes release inside the package, so it needs no cluster and no network. Strict
  mode (unknown fields rejected), pinned to one release so a new package version cannot move
  the goalposts. Skipped, with the reason shown, when the package is not installed
  (``pip install kubernetes-validate``);
* structural assertions with PyYAML on what the schema cannot say: the security settings,
  probes, ports, RBAC scope and names that the walkthrough relies on.
"""

from __future__ import annotations

import copy
import re
import shlex
import subprocess
from pathlib import Path

import pytest
import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
DEPLOY = REPO_ROOT / "deploy"
KUBERNETES_VERSION = "1.34.0"


def load_documents():
    documents = []
    for path in sorted(DEPLOY.glob("*.yaml")):
        for document in yaml.safe_load_all(path.read_text()):
            if document is not None:
                documents.append((path.name, document))
    return documents


DOCUMENTS = load_documents()


def find(kind: str, name: str):
    matches = [d for _, d in DOCUMENTS if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(matches) == 1, f"expected one {kind} {name}, found {len(matches)}"
    return matches[0]


def daemonset():
    return find("DaemonSet", "service-loadbalancer")


def container():
    containers = daemonset()["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return containers[0]


# Schema validation ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "document", [d for _, d in DOCUMENTS], ids=[f"{f}:{d['kind']}/{d['metadata']['name']}" for f, d in DOCUMENTS]
)
def test_schema_valid(document):
    kubernetes_validate = pytest.importorskip(
        "kubernetes_validate", reason="kubernetes-validate is not installed; only the structural checks ran"
    )
    kubernetes_validate.validate(document, KUBERNETES_VERSION, True)


def test_schema_validation_rejects_mistakes():
    """The validator is not a no-op: a wrong type and an unknown field both fail."""
    kubernetes_validate = pytest.importorskip("kubernetes_validate", reason="kubernetes-validate is not installed")
    broken = copy.deepcopy(daemonset())
    broken["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"] = "eighty"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES_VERSION, True)
    unknown = copy.deepcopy(daemonset())
    unknown["spec"]["template"]["spec"]["containers"][0]["securityContext"]["readOnlyRootFS"] = True
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(unknown, KUBERNETES_VERSION, True)


# The DaemonSet ----------------------------------------------------------------------------


def test_every_document_is_a_known_kind():
    kinds = sorted(d["kind"] for _, d in DOCUMENTS)
    assert kinds == sorted(
        [
            "ServiceAccount", "ClusterRole", "ClusterRoleBinding", "DaemonSet", "Service",
            "Namespace", "Deployment", "Service",
        ]
    )


def test_daemonset_runs_on_loadbalancer_nodes_without_host_network():
    pod = daemonset()["spec"]["template"]["spec"]
    assert daemonset()["metadata"]["namespace"] == "kube-system"
    assert pod["nodeSelector"] == {"role": "loadbalancer"}
    assert pod.get("hostNetwork", False) is False
    assert pod["serviceAccountName"] == "service-loadbalancer"
    selector = daemonset()["spec"]["selector"]["matchLabels"]
    assert all(daemonset()["spec"]["template"]["metadata"]["labels"].get(k) == v for k, v in selector.items())


def test_container_ports_and_probes():
    ports = {p["name"]: p["containerPort"] for p in container()["ports"]}
    assert ports == {"http": 80, "https": 443, "admin": 8081}
    for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
        get = container()[probe]["httpGet"]
        assert get["path"] == path
        assert ports.get(get["port"], get["port"]) == 8081


def test_resources_have_requests_and_limits():
    resources = container()["resources"]
    assert set(resources["requests"]) == {"cpu", "memory"}
    assert set(resources["limits"]) == {"cpu", "memory"}


def test_security_context_is_restrictive():
    pod = daemonset()["spec"]["template"]["spec"]
    context = container()["securityContext"]
    assert context["runAsNonRoot"] is True
    assert context["runAsUser"] != 0
    assert context["readOnlyRootFilesystem"] is True
    assert context["allowPrivilegeEscalation"] is False
    assert context.get("privileged", False) is False
    assert context["capabilities"]["drop"] == ["ALL"]
    assert "add" not in context["capabilities"]
    assert context["seccompProfile"]["type"] == "RuntimeDefault"
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
    # Binding 80/443 without NET_BIND_SERVICE relies on this namespaced sysctl.
    sysctls = {s["name"]: s["value"] for s in pod["securityContext"]["sysctls"]}
    assert sysctls == {"net.ipv4.ip_unprivileged_port_start": "0"}
    assert not pod.get("hostPID") and not pod.get("hostIPC")


def test_grace_period_covers_the_drain():
    assert daemonset()["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] > 30


# The NodePort Service ---------------------------------------------------------------------


def test_lb_service_nodeports():
    service = find("Service", "lb-service")
    assert service["metadata"]["namespace"] == "kube-system"
    assert service["spec"]["type"] == "NodePort"
    assert service["spec"]["selector"] == daemonset()["spec"]["selector"]["matchLabels"]
    ports = {(p["port"], p["nodePort"]) for p in service["spec"]["ports"]}
    assert ports == {(80, 30800), (443, 30443)}
    container_ports = {p["name"] for p in container()["ports"]}
    assert {p["targetPort"] for p in service["spec"]["ports"]} <= container_ports


# RBAC -------------------------------------------------------------------------------------


def test_cluster_role_reads_services_and_endpointslices_only():
    role = find("ClusterRole", "service-loadbalancer")
    rules = sorted(
        (tuple(r["apiGroups"]), tuple(r["resources"]), tuple(sorted(r["verbs"]))) for r in role["rules"]
    )
    assert rules == [
        (("",), ("services",), ("get", "list", "watch")),
        (("discovery.k8s.io",), ("endpointslices",), ("get", "list", "watch")),
    ]


def test_binding_ties_the_role_to_the_daemonset_account():
    account = find("ServiceAccount", "service-loadbalancer")
    binding = find("ClusterRoleBinding", "service-loadbalancer")
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "service-loadbalancer",
    }
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": account["metadata"]["name"], "namespace": account["metadata"]["namespace"]}
    ]
    assert account["metadata"]["namespace"] == daemonset()["metadata"]["namespace"]


# The example ------------------------------------------------------------------------------


def test_grafana_example_uses_the_original_annotation():
    service = find("Service", "grafana")
    assert service["metadata"]["namespace"] == "monitoring"
    assert service["metadata"]["annotations"] == {"serviceloadbalancer/lb.host": "grafana.example.com:30800"}
    deployment = find("Deployment", "grafana")
    assert service["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]
    container_ports = {p["name"] for p in deployment["spec"]["template"]["spec"]["containers"][0]["ports"]}
    assert service["spec"]["ports"][0]["targetPort"] in container_ports


# The image --------------------------------------------------------------------------------


def test_dockerfile_is_multi_stage_static_and_non_root():
    text = (DEPLOY / "Dockerfile").read_text()
    stages = re.findall(r"^FROM\s+(\S+)(?:\s+AS\s+(\S+))?", text, re.MULTILINE | re.IGNORECASE)
    assert len(stages) == 2
    assert stages[0][0].startswith("swift:") and stages[0][1] == "builder"
    assert re.search(r"^ARG SWIFT_VERSION=6\.\d+$", text, re.MULTILINE)
    assert stages[1][0] == "debian:12-slim"
    assert re.search(r"swift build -c release --static-swift-stdlib", text)
    runtime = text.split("FROM debian:12-slim", 1)[1]
    assert re.search(r"\bliburing2\b", runtime) and re.search(r"\blibssl3\b", runtime)
    assert re.search(r"\blibnghttp2-14\b", runtime), "the binary links libnghttp2"
    builder = text.split("FROM debian:12-slim", 1)[0]
    assert re.search(r"\blibnghttp2-dev\b", builder), "CShims builds against libnghttp2"
    users = re.findall(r"^USER\s+(\S+)", runtime, re.MULTILINE)
    assert users and users[-1].split(":")[0] not in ("0", "root")
    assert users[-1].split(":")[0] == str(container()["securityContext"]["runAsUser"])
    assert "COPY --from=builder" in runtime


def dockerfile_copy_sources(text: str):
    """The sources of every COPY that reads the build context (not ``--from`` a stage)."""
    sources = []
    for line in re.findall(r"^COPY\s+(.+)$", text, re.MULTILINE | re.IGNORECASE):
        words = shlex.split(line)
        if any(w.startswith("--from") for w in words):
            continue
        paths = [w for w in words if not w.startswith("--")]
        assert len(paths) >= 2, f"COPY without source and destination: {line}"
        sources.extend(paths[:-1])
    return sources


def test_dockerfile_copies_only_what_the_repository_holds():
    """A clone builds the image: every COPY source is a file or directory in the git tree
    (an ignored file such as Package.resolved would exist only in a working copy)."""
    try:
        listed = subprocess.run(["git", "ls-files"], cwd=REPO_ROOT, capture_output=True, text=True,
                                check=True).stdout.splitlines()
    except (OSError, subprocess.CalledProcessError) as exc:
        pytest.skip(f"not a git checkout: {exc}")
    tracked = set(listed)
    sources = dockerfile_copy_sources((DEPLOY / "Dockerfile").read_text())
    assert "Package.swift" in sources
    for source in sources:
        path = source.rstrip("/").removeprefix("./")
        assert path in tracked or any(f.startswith(path + "/") for f in tracked), (
            f"deploy/Dockerfile copies {source!r}, which is not in the repository")
    assert dockerfile_copy_sources("COPY --chown=1:1 a b ./\nCOPY --from=builder /x /y\n") == ["a", "b"]


def _seconds(text: str) -> float:
    match = re.fullmatch(r"(\d+)(ms|s|m)?", text)
    assert match, text
    scale = {"ms": 0.001, "s": 1, "m": 60, None: 1}[match.group(2)]
    return int(match.group(1)) * scale


def test_rollout_keeps_a_ready_pod_per_node():
    """A rollout surges one new pod per node before the old one stops, never going below
    one ready pod; the grace period covers the drain delay and the drain; no hostPort (two
    pods of a node would collide) and the Service sends to node-local pods only."""
    strategy = daemonset()["spec"]["updateStrategy"]
    assert strategy["type"] == "RollingUpdate"
    assert strategy["rollingUpdate"] == {"maxSurge": 1, "maxUnavailable": 0}
    args = container()["args"]
    flags = dict(a[2:].split("=", 1) for a in args if a.startswith("--") and "=" in a)
    delay = _seconds(flags["drain-delay"])
    drain = _seconds(flags["drain"])
    assert delay >= 5
    grace = daemonset()["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    assert grace >= delay + drain + 5, (grace, delay, drain)
    assert all("hostPort" not in port for port in container()["ports"])
    assert find("Service", "lb-service")["spec"]["externalTrafficPolicy"] == "Local"
    probe = container()["readinessProbe"]
    assert probe["httpGet"]["path"] == "/readyz"
