"""The Helm chart: rendered offline for every ci/ values case, linted, and every
manifest validated against each Kubernetes minor version the chart claims.

Rendering uses helm-python-sdk (Helm v4 as a library; no helm binary, no
cluster). ``Chart.render`` takes no capabilities, so ``render`` below calls the
library's render entry point with Helm's own ``kube_version`` and
``api_versions`` options, the ones ``helm template --kube-version
--api-versions`` sets; ``test_render_honours_capabilities`` fails loudly if a
release of the library stops honouring them.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

from stockade.config.load import load_settings
from tests.ops.tools import CHART, DASHBOARD, RULES, SETUP, tool

helm = pytest.importorskip("helm_python", reason=f"helm-python-sdk is not installed ({SETUP})")
kv = pytest.importorskip("kubernetes_validate",
                         reason=f"kubernetes-validate is not installed ({SETUP})")
from helm_python import _native  # noqa: E402

RELEASE = "demo"
NAMESPACE = "packages"
MONITORING = "monitoring.coreos.com/v1"
CASES = sorted(p.name.removesuffix("-values.yaml") for p in (CHART / "ci").glob("*-values.yaml"))
# Kinds that no Kubernetes schema covers: the Prometheus Operator's CRDs.
CRD_KINDS = {"ServiceMonitor", "PrometheusRule"}


def _minor(version: str) -> tuple[int, int]:
    major, minor = version.split(".")[:2]
    return int(major), int(minor)


def claimed_versions() -> list[str]:
    """Minor versions the chart's kubeVersion admits that kubernetes-validate knows."""
    spec = yaml.safe_load((CHART / "Chart.yaml").read_text())["kubeVersion"]
    match = re.fullmatch(r">=\s*(\d+)\.(\d+)\.\d+(-0)?", spec)
    assert match, f"kubeVersion {spec!r}: only a '>=X.Y.Z-0' floor is understood here"
    floor = (int(match[1]), int(match[2]))
    known = sorted({".".join(v.split(".")[:2]) for v in kv.utils.all_versions()}, key=_minor)
    return [v for v in known if _minor(v) >= floor]


VERSIONS = claimed_versions()


@cache
def chart() -> Any:
    return helm.Chart.load(CHART)


def case_values(case: str) -> dict[str, Any]:
    values: dict[str, Any] = yaml.safe_load((CHART / "ci" / f"{case}-values.yaml").read_text())
    return values or {}


def render(values: dict[str, Any], *, kube_version: str = VERSIONS[0],
           api_versions: tuple[str, ...] = ()) -> dict[str, str]:
    """``helm template`` with the given capabilities: template path -> text."""
    opts = {"name": RELEASE, "namespace": NAMESPACE, "is_install": True,
            "kube_version": f"v{kube_version}.0", "api_versions": list(api_versions)}
    out: dict[str, str] = json.loads(_native.call_string(
        "helm_render", chart()._raw(), json.dumps(values), json.dumps(opts)))
    return out


def manifests(rendered: dict[str, str]) -> list[dict[str, Any]]:
    docs: list[dict[str, Any]] = []
    for path, text in sorted(rendered.items()):
        if path.endswith(".txt"):
            continue
        docs.extend(d for d in yaml.safe_load_all(text) if d)
    return docs


def by_kind(docs: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for doc in docs:
        out.setdefault(doc["kind"], []).append(doc)
    return out


def the(docs: list[dict[str, Any]], kind: str, name_suffix: str = "") -> dict[str, Any]:
    found = [d for d in by_kind(docs).get(kind, [])
             if d["metadata"]["name"].endswith(name_suffix)]
    assert len(found) == 1, f"{kind}*{name_suffix}: {[d['metadata']['name'] for d in found]}"
    return found[0]


def test_chart_claims_kubernetes_from_1_30() -> None:
    assert VERSIONS, "kubernetes-validate knows none of the versions the chart claims"
    assert _minor(VERSIONS[0]) >= (1, 30)
    assert sorted(VERSIONS, key=_minor) == VERSIONS


def test_render_honours_capabilities() -> None:
    plain = render(case_values("monitoring"))
    with_crds = render(case_values("monitoring"), api_versions=(MONITORING,))
    assert "kind: ServiceMonitor" not in "".join(plain.values())
    assert "kind: ServiceMonitor" in "".join(with_crds.values())
    newest = render({}, kube_version=VERSIONS[-1])
    assert newest.keys() == render({}).keys()


@pytest.mark.parametrize("case", CASES)
def test_values_case_passes_schema_and_lint(case: str) -> None:
    values = case_values(case)
    chart().validate_schema(values)
    report = helm.lint(CHART, values, strict=True, namespace=NAMESPACE,
                       kube_version=f"v{VERSIONS[0]}.0")
    problems = [m for m in report["messages"] if m["severity"] >= 2]
    assert not problems and not report["errors"], report


def test_ci_cases_cover_the_chart() -> None:
    assert {"default", "persistence", "s3", "monitoring", "hpa", "front", "access"} <= set(CASES)


def test_schema_refuses_unknown_keys() -> None:
    for values in ({"persistence": {"enabld": True}}, {"replicas": 2},
                   {"storage": {"backend": "gcs"}}):
        with pytest.raises(helm.HelmValuesError):
            chart().validate_schema(values)


@pytest.fixture(scope="module")
def cached_schemas() -> Iterator[None]:
    """kubernetes-validate reads and parses its schema files on every call;
    reading each once keeps 40 renders' validation to seconds."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(kv.utils, "schema_contents", cache(kv.utils.schema_contents))
        patch.setattr(kv.utils, "all_versions", cache(kv.utils.all_versions))
        yield


@pytest.mark.usefixtures("cached_schemas")
@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("case", CASES)
def test_manifests_validate(case: str, version: str) -> None:
    docs = manifests(render(case_values(case), kube_version=version,
                            api_versions=(MONITORING,)))
    assert docs
    for doc in docs:
        if doc["kind"] in CRD_KINDS:
            assert doc["apiVersion"] == MONITORING
            continue
        try:
            kv.validate(doc, f"{version}.0", strict=True)
        except kv.ValidationError as exc:
            path = ".".join(str(p) for p in exc.path)
            pytest.fail(f"{case} on {version}: {doc['kind']}/{doc['metadata']['name']}: "
                        f"{path}: {exc.message}")


def test_default_pod_is_locked_down() -> None:
    docs = manifests(render({}))
    kinds = by_kind(docs)
    assert set(kinds) == {"ConfigMap", "Deployment", "PodDisruptionBudget", "Service",
                          "ServiceAccount", "Pod"}  # Pod: the helm test hook
    deploy = the(docs, "Deployment")
    pod = deploy["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] != 0
    (container,) = pod["containers"]
    sc = container["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"]["drop"] == ["ALL"]
    assert "resources" not in container
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["args"] == ["serve", "--config", "/etc/stockade/config.yaml"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["data"] == {"name": "data", "emptyDir": {}}
    # Mounted whole (no subPath), so the kubelet's updates reach the files.
    assert all("subPath" not in m for m in container["volumeMounts"])
    selector = deploy["spec"]["selector"]["matchLabels"]
    assert "helm.sh/chart" not in selector
    assert selector.items() <= deploy["spec"]["template"]["metadata"]["labels"].items()
    assert the(docs, "Service")["spec"]["selector"] == selector


def test_test_hook_asks_readyz() -> None:
    pod = the(manifests(render({})), "Pod")
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    (container,) = pod["spec"]["containers"]
    assert container["command"][-1] == f"http://{RELEASE}-stockade:8080/readyz"


def _config_of(docs: list[dict[str, Any]]) -> dict[str, Any]:
    cm = the(docs, "ConfigMap", "-stockade")
    config: dict[str, Any] = yaml.safe_load(cm["data"]["config.yaml"])
    return config


def _checksum(docs: list[dict[str, Any]]) -> str:
    annotations = the(docs, "Deployment")["spec"]["template"]["metadata"]["annotations"]
    return str(annotations["checksum/config"])


def test_config_change_rolls_pods_and_policy_change_does_not() -> None:
    base = manifests(render({}))
    config_changed = manifests(render({"config": {"logging": {"level": "DEBUG"}}}))
    policy_changed = manifests(render({"policy": {"content": "# reviewed\nmode: audit\n"}}))
    assert _checksum(config_changed) != _checksum(base)
    assert _checksum(policy_changed) == _checksum(base)
    policy = the(policy_changed, "ConfigMap", "-policy")
    assert policy["data"]["policy.yaml"] == "# reviewed\nmode: audit\n"


def test_chart_owns_listen_address_storage_and_policy_path() -> None:
    config = _config_of(manifests(render(
        {"config": {"server": {"host": "127.0.0.1", "port": 1}, "storage": {"path": "/x"}}})))
    assert config["server"] == {"host": "0.0.0.0", "port": 8080}  # noqa: S104
    assert config["storage"] == {"path": "/var/lib/stockade"}
    assert config["policy"] == {"file": "/etc/stockade/policy.yaml"}
    without = manifests(render({"policy": {"content": ""}}))
    assert "policy" not in _config_of(without)
    assert not [d for d in without if d["metadata"]["name"].endswith("-policy")]


def test_existing_policy_config_map_is_mounted() -> None:
    docs = manifests(render({"policy": {"existingConfigMap": "team-policy"}}))
    assert not [d for d in docs if d["metadata"]["name"].endswith("-policy")]
    volumes = the(docs, "Deployment")["spec"]["template"]["spec"]["volumes"]
    sources = next(v for v in volumes if v["name"] == "config")["projected"]["sources"]
    assert {"configMap": {"name": "team-policy",
                          "items": [{"key": "policy.yaml", "path": "policy.yaml"}]}} in sources


def test_persistence_case_uses_a_claim_and_recreates() -> None:
    docs = manifests(render(case_values("persistence")))
    pvc = the(docs, "PersistentVolumeClaim")
    assert pvc["spec"]["resources"]["requests"]["storage"] == "50Gi"
    deploy = the(docs, "Deployment")
    assert deploy["spec"]["strategy"] == {"type": "Recreate"}
    volumes = {v["name"]: v for v in deploy["spec"]["template"]["spec"]["volumes"]}
    assert volumes["data"]["persistentVolumeClaim"]["claimName"] == pvc["metadata"]["name"]


def test_persistence_with_several_replicas_is_refused() -> None:
    for extra in ({"replicaCount": 2}, {"autoscaling": {"enabled": True}}):
        with pytest.raises(helm.HelmRenderError, match="one replica"):
            render({"persistence": {"enabled": True}, **extra})


def test_s3_case_writes_the_design_keys_and_passes_the_secret() -> None:
    docs = manifests(render(case_values("s3")))
    storage = _config_of(docs)["storage"]
    assert storage["backend"] == "s3"
    assert set(storage["s3"]) == {"bucket", "prefix", "endpoint_url", "addressing_style",
                                  "region", "access_key_id_env", "secret_access_key_env",
                                  "cache_max_bytes"}
    (container,) = the(docs, "Deployment")["spec"]["template"]["spec"]["containers"]
    assert container["envFrom"] == [{"secretRef": {"name": "stockade-credentials"}}]
    assert the(docs, "PodDisruptionBudget")["spec"] == {
        "minAvailable": 2, "selector": the(docs, "PodDisruptionBudget")["spec"]["selector"]}
    assert the(docs, "Deployment")["spec"]["replicas"] == 3


def test_hpa_case_drops_fixed_replicas() -> None:
    docs = manifests(render(case_values("hpa")))
    hpa = the(docs, "HorizontalPodAutoscaler")
    assert hpa["spec"]["scaleTargetRef"]["name"] == the(docs, "Deployment")["metadata"]["name"]
    assert "replicas" not in the(docs, "Deployment")["spec"]
    assert {m["resource"]["name"] for m in hpa["spec"]["metrics"]} == {"cpu", "memory"}


def test_monitoring_needs_both_the_switch_and_the_crds() -> None:
    on = case_values("monitoring")
    without_crds = by_kind(manifests(render(on)))
    assert not CRD_KINDS & set(without_crds)
    assert "CRDs" in render(on)["stockade/templates/NOTES.txt"]
    switched_off = by_kind(manifests(render({}, api_versions=(MONITORING,))))
    assert not CRD_KINDS & set(switched_off)
    with_crds = by_kind(manifests(render(on, api_versions=(MONITORING,))))
    assert set(with_crds) >= CRD_KINDS
    monitor = with_crds["ServiceMonitor"][0]
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    assert monitor["spec"]["endpoints"][0]["path"] == "/metrics"


def test_prometheus_rule_is_the_rules_file_with_the_capacity_set(tmp_path: Path) -> None:
    values = case_values("monitoring")
    docs = manifests(render(values, api_versions=(MONITORING,)))
    spec = the(docs, "PrometheusRule")["spec"]
    capacity = str(values["prometheusRule"]["storageCapacityBytes"])
    plain = RULES.read_text()
    assert "107374182400" in plain
    assert spec == yaml.safe_load(plain.replace("107374182400", capacity))
    rules = tmp_path / "from-chart.rules.yaml"
    rules.write_text(yaml.safe_dump(spec))
    result = subprocess.run([tool("promtool"), "check", "rules", str(rules)],  # noqa: S603
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_dashboard_config_map_is_the_committed_json_for_the_sidecar() -> None:
    docs = manifests(render(case_values("monitoring")))
    cm = the(docs, "ConfigMap", "-dashboard")
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert cm["metadata"]["namespace"] == "monitoring"
    assert json.loads(cm["data"]["stockade.json"]) == json.loads(DASHBOARD.read_text())
    assert "-dashboard" not in json.dumps(manifests(render({})))


def test_rendered_configs_load() -> None:
    """Every case's config is one stockade's loader accepts (s3: a backend still to come)."""
    for case in CASES:
        config = _config_of(manifests(render(case_values(case))))
        if case == "s3":
            continue
        settings = load_settings(None, environ={}, overrides=config)
        assert settings.server.host == "0.0.0.0"  # noqa: S104
        assert str(settings.storage.path) == "/var/lib/stockade"


@pytest.mark.timeout(120)
def test_default_config_and_policy_start_as_a_pod_would(tmp_path: Path) -> None:
    """`stockade check` loads the default config and its policy from files."""
    docs = manifests(render({}))
    config = _config_of(docs)
    policy = tmp_path / "policy.yaml"
    policy.write_text(the(docs, "ConfigMap", "-policy")["data"]["policy.yaml"])
    config["policy"] = {"file": str(policy)}  # mounted at /etc/stockade in the pod
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    result = subprocess.run(  # noqa: S603
        [str(Path(sys.executable).parent / "stockade"), "check", "pypi", "requests",
         "--config", str(path), "--json"],
        capture_output=True, text=True, timeout=100, check=False,
        env={"PATH": "/usr/bin:/bin", "STOCKADE__STORAGE__PATH": str(tmp_path / "data")})
    assert result.returncode == 0, result.stdout + result.stderr
    assert json.loads(result.stdout)["decision"] == "allow"


def test_front_case_puts_nginx_before_stockade(tmp_path: Path) -> None:
    """frontServer: the Service reaches nginx, which stockade's X-Accel-Redirect names
    files to under the data volume (read-only); stockade's config turns the mode on."""
    docs = manifests(render(case_values("front")))
    (port,) = the(docs, "Service")["spec"]["ports"]
    assert port["targetPort"] == "front"
    pod = the(docs, "Deployment")["spec"]["template"]
    containers = {c["name"]: c for c in pod["spec"]["containers"]}
    assert set(containers) == {"stockade", "front"}
    front = containers["front"]
    assert front["ports"] == [{"name": "front", "containerPort": 8081, "protocol": "TCP"}]
    mounts = {m["name"]: m for m in front["volumeMounts"]}
    assert mounts["data"] == {"name": "data", "mountPath": "/var/lib/stockade",
                              "readOnly": True}
    assert front["securityContext"]["readOnlyRootFilesystem"] is True
    prefix = _config_of(docs)["server"]["accel_redirect"]["prefix"]
    conf = the(docs, "ConfigMap", "-front")["data"]["nginx.conf"]
    location = conf[conf.index(f"location {prefix} {{"):]
    assert "internal;" in location
    assert "alias /var/lib/stockade/;" in location
    assert "server 127.0.0.1:8080;" in conf
    assert "checksum/front" in pod["metadata"]["annotations"]
    plain = manifests(render({}))
    assert "accel_redirect" not in _config_of(plain)["server"]
    assert the(plain, "Service")["spec"]["ports"][0]["targetPort"] == "http"
    # nginx itself accepts the file (where it is installed)
    nginx = shutil.which("nginx")
    if nginx is None:
        return
    path = tmp_path / "nginx.conf"
    path.write_text(conf.replace("/tmp/", f"{tmp_path}/"))  # noqa: S108 (the pod's /tmp)
    result = subprocess.run([nginx, "-t", "-c", str(path), "-e", "stderr"],  # noqa: S603
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr


def _secret_file(docs: list[dict[str, Any]], path: str) -> tuple[str, dict[str, Any]]:
    """The Secret and the mount a config path is read from (the mount's directory
    holds the file as an item of the Secret)."""
    pod = the(docs, "Deployment")["spec"]["template"]["spec"]
    container = next(c for c in pod["containers"] if c["name"] == "stockade")
    folder, _, filename = path.rpartition("/")
    (mount,) = [m for m in container["volumeMounts"] if m["mountPath"] == folder]
    volume = next(v for v in pod["volumes"] if v["name"] == mount["name"])
    assert {"key": filename, "path": filename} in volume["secret"]["items"], volume
    assert volume["secret"]["defaultMode"] == 0o440  # the pod's group (fsGroup) only
    return volume["secret"]["secretName"], mount


def test_access_case_reads_tokens_and_tls_from_secrets_mounted_read_only() -> None:
    docs = manifests(render(case_values("access")))
    config = _config_of(docs)
    tls = config["server"]["tls"]
    files = {"tokens": config["auth"]["tokens"], "cert": tls["cert"], "key": tls["key"],
             "client_ca": tls["client_ca"]}
    secrets = {}
    for what, path in files.items():
        secret, mount = _secret_file(docs, path)
        assert mount.get("readOnly") is True and "subPath" not in mount, what
        secrets[what] = secret
    assert secrets == {"tokens": "stockade-tokens", "cert": "stockade-tls",
                       "key": "stockade-tls", "client_ca": "stockade-client-ca"}
    assert config["auth"]["anonymous"]["pypi"] is False  # the user's keys stay beside
    settings = load_settings(None, environ={}, overrides=config)
    assert settings.server.tls.enabled and settings.server.tls.client_ca is not None
    assert settings.auth.tokens is not None
    # the kubelet presents no client certificate: the probes only connect
    (container,) = the(docs, "Deployment")["spec"]["template"]["spec"]["containers"]
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        assert container[probe]["tcpSocket"] == {"port": "http"}
        assert "httpGet" not in container[probe]
    assert "Pod" not in by_kind(docs)  # no helm test that could not connect
    monitors = by_kind(manifests(render(case_values("access"),
                                        api_versions=(MONITORING,))))["ServiceMonitor"]
    (endpoint,) = monitors[0]["spec"]["endpoints"]
    assert endpoint["scheme"] == "https"
    assert endpoint["tlsConfig"]["ca"] == {"secret": {"name": "stockade-tls", "key": "ca.crt"}}


def test_tls_without_client_certificates_probes_over_https() -> None:
    docs = manifests(render({"tls": {"secretName": "stockade-tls"}}))
    config = _config_of(docs)
    assert config["server"]["tls"] == {"cert": "/etc/stockade-tls/tls.crt",
                                       "key": "/etc/stockade-tls/tls.key"}
    assert "auth" not in config
    (container,) = the(docs, "Deployment")["spec"]["template"]["spec"]["containers"]
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http",
                                                      "scheme": "HTTPS"}
    assert container["livenessProbe"]["httpGet"]["scheme"] == "HTTPS"
    assert the(docs, "Pod")["spec"]["containers"][0]["command"][-1].startswith("https://")
    plain = manifests(render({}))
    (container,) = the(plain, "Deployment")["spec"]["template"]["spec"]["containers"]
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    names = {v["name"] for v in the(plain, "Deployment")["spec"]["template"]["spec"]["volumes"]}
    assert not names & {"auth", "tls", "client-ca"}


def test_tokens_key_and_client_ca_key_are_followed() -> None:
    docs = manifests(render({"auth": {"tokensSecret": "t", "tokensKey": "access.yaml"},
                             "tls": {"secretName": "s", "clientCASecret": "s",
                                     "clientCAKey": "bundle.pem"}}))
    config = _config_of(docs)
    assert config["auth"]["tokens"] == "/etc/stockade-auth/access.yaml"
    assert config["server"]["tls"]["client_ca"] == "/etc/stockade-client-ca/bundle.pem"
    assert _secret_file(docs, config["server"]["tls"]["client_ca"])[0] == "s"


@pytest.mark.parametrize(("values", "says"), [
    ({"tls": {"secretName": "s"}, "frontServer": {"enabled": True}}, "plain HTTP"),
    ({"tls": {"clientCASecret": "ca"}}, "needs tls.secretName"),
])
def test_tls_combinations_that_cannot_work_are_refused(values: dict[str, Any],
                                                        says: str) -> None:
    with pytest.raises(helm.HelmRenderError, match=says):
        render(values)


def test_schema_refuses_unknown_tls_and_auth_keys() -> None:
    for values in ({"tls": {"secret": "x"}}, {"auth": {"tokens": "x"}},
                   {"auth": {"tokensKey": "../etc/passwd"}}):
        with pytest.raises(helm.HelmValuesError):
            chart().validate_schema(values)
