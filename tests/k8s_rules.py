"""Kubernetes rules the tests evaluate rendered objects against, written from the specs.

- `restricted_violations`: the Pod Security Standards `restricted` profile (baseline included),
  https://kubernetes.io/docs/concepts/security/pod-security-standards/ (v1.32), as the
  PodSecurity admission plugin checks a pod spec.
- `selector_matches` / `network_policy_admits`: label selectors and NetworkPolicy ingress peers.
- `rbac_allows`: whether Role rules grant a verb on a resource (and name).
"""

from __future__ import annotations

from typing import Any

# Volume types the restricted profile allows.
_RESTRICTED_VOLUMES = {
    "configMap",
    "csi",
    "downwardAPI",
    "emptyDir",
    "ephemeral",
    "persistentVolumeClaim",
    "projected",
    "secret",
}
_SAFE_SYSCTLS = {
    "kernel.shm_rmid_forced",
    "net.ipv4.ip_local_port_range",
    "net.ipv4.ip_unprivileged_port_start",
    "net.ipv4.tcp_syncookies",
    "net.ipv4.ping_group_range",
    "net.ipv4.ip_local_reserved_ports",
    "net.ipv4.tcp_keepalive_time",
    "net.ipv4.tcp_fin_timeout",
    "net.ipv4.tcp_keepalive_intvl",
    "net.ipv4.tcp_keepalive_probes",
}
_SELINUX_TYPES = {"", "container_t", "container_init_t", "container_kvm_t", "container_engine_t"}


def _containers(spec: dict[str, Any]) -> list[dict[str, Any]]:
    return spec.get("containers", []) + spec.get("initContainers", []) + spec.get("ephemeralContainers", [])


def restricted_violations(spec: dict[str, Any]) -> list[str]:
    """Every rule of `restricted` that this pod spec breaks (empty: admitted)."""
    bad: list[str] = []
    pod = spec.get("securityContext") or {}
    # --- baseline ---
    for field in ("hostNetwork", "hostPID", "hostIPC"):
        if spec.get(field):
            bad.append(f"{field}=true")
    for vol in spec.get("volumes", []):
        kinds = set(vol) - {"name"}
        if "hostPath" in kinds:
            bad.append(f"volume {vol['name']}: hostPath")
        elif not kinds <= _RESTRICTED_VOLUMES:
            bad.append(f"volume {vol['name']}: type {sorted(kinds)} not allowed")
    for sysctl in pod.get("sysctls", []):
        if sysctl["name"] not in _SAFE_SYSCTLS:
            bad.append(f"unsafe sysctl {sysctl['name']}")
    if (pod.get("windowsOptions") or {}).get("hostProcess"):
        bad.append("hostProcess pod")
    pod_seccomp = (pod.get("seccompProfile") or {}).get("type")
    pod_non_root = pod.get("runAsNonRoot")
    if pod.get("runAsUser") == 0:
        bad.append("pod runAsUser=0")
    if (pod.get("seLinuxOptions") or {}).get("type", "") not in _SELINUX_TYPES:
        bad.append("pod SELinux type")
    if (pod.get("appArmorProfile") or {}).get("type") == "Unconfined":
        bad.append("pod AppArmor Unconfined")
    for c in _containers(spec):
        who = f"container {c['name']}"
        sc = c.get("securityContext") or {}
        if sc.get("privileged"):
            bad.append(f"{who}: privileged")
        if (sc.get("windowsOptions") or {}).get("hostProcess"):
            bad.append(f"{who}: hostProcess")
        if any(p.get("hostPort") for p in c.get("ports", [])):
            bad.append(f"{who}: hostPort")
        if sc.get("procMount", "Default") != "Default":
            bad.append(f"{who}: procMount {sc['procMount']}")
        if (sc.get("seLinuxOptions") or {}).get("type", "") not in _SELINUX_TYPES:
            bad.append(f"{who}: SELinux type")
        if (sc.get("appArmorProfile") or {}).get("type") == "Unconfined":
            bad.append(f"{who}: AppArmor Unconfined")
        # --- restricted ---
        if sc.get("allowPrivilegeEscalation") is not False:
            bad.append(f"{who}: allowPrivilegeEscalation must be false")
        if sc.get("runAsNonRoot", pod_non_root) is not True:
            bad.append(f"{who}: runAsNonRoot must be true")
        if sc.get("runAsUser") == 0:
            bad.append(f"{who}: runAsUser=0")
        seccomp = (sc.get("seccompProfile") or {}).get("type", pod_seccomp)
        if seccomp not in ("RuntimeDefault", "Localhost"):
            bad.append(f"{who}: seccompProfile {seccomp!r}")
        caps = sc.get("capabilities") or {}
        if "ALL" not in caps.get("drop", []):
            bad.append(f"{who}: capabilities must drop ALL")
        if set(caps.get("add", [])) - {"NET_BIND_SERVICE"}:
            bad.append(f"{who}: adds capabilities {caps['add']}")
    return bad


def selector_matches(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    """A LabelSelector (matchLabels AND matchExpressions); the empty selector matches everything."""
    if not (selector.get("matchLabels") or {}).items() <= labels.items():
        return False
    for expr in selector.get("matchExpressions", []):
        key, op, values = expr["key"], expr["operator"], expr.get("values", [])
        if op == "In" and labels.get(key) not in values:
            return False
        if op == "NotIn" and key in labels and labels[key] in values:
            return False
        if op == "Exists" and key not in labels:
            return False
        if op == "DoesNotExist" and key in labels:
            return False
    return True


def network_policy_admits(
    policy: dict[str, Any], pod_labels: dict[str, str], namespace: str, policy_namespace: str
) -> bool:
    """Whether an ingress rule of `policy` lets a pod (its labels, its namespace) in.
    Namespaces carry kubernetes.io/metadata.name, as the API server sets it."""
    ns_labels = {"kubernetes.io/metadata.name": namespace}
    for rule in policy["spec"].get("ingress", []):
        for peer in rule.get("from", []):
            ns_sel, pod_sel = peer.get("namespaceSelector"), peer.get("podSelector")
            if ns_sel is None and namespace != policy_namespace:
                continue  # a podSelector alone means the policy's own namespace
            if ns_sel is not None and not selector_matches(ns_sel, ns_labels):
                continue
            if pod_sel is not None and not selector_matches(pod_sel, pod_labels):
                continue
            return True
    return False


def rbac_allows(
    rules: list[dict[str, Any]], verb: str, resource: str, group: str = "", name: str | None = None
) -> bool:
    for rule in rules:
        if group not in rule.get("apiGroups", []) and "*" not in rule.get("apiGroups", []):
            continue
        if resource not in rule.get("resources", []) and "*" not in rule.get("resources", []):
            continue
        if verb not in rule.get("verbs", []) and "*" not in rule.get("verbs", []):
            continue
        names = rule.get("resourceNames")
        if names and name not in names:
            continue
        return True
    return False
