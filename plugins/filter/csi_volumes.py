# Copyright: turnkey.cluster maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

# Documented in csi_volumes.yml beside this file.

PVC_PROTECTION = "kubernetes.io/pvc-protection"


def _key(namespace, name):
    return "%s/%s" % (namespace, name)


def _claims_of_pod(pod):
    namespace = pod["metadata"]["namespace"]
    return {_key(namespace, volume["persistentVolumeClaim"]["claimName"])
            for volume in pod.get("spec", {}).get("volumes") or [] if volume.get("persistentVolumeClaim")}


def csi_volumes(resources, provisioners, storage_classes=()):
    """What the Proxmox CSI storage holds in a cluster, from the API's lists: the classes of the given
    provisioners (plus classes named outright), the claims on them, the pods that mount those claims, and
    the volumes bound to them or of those classes, each with the reason it still exists."""
    classes = sorted({item["metadata"]["name"] for item in resources.get("storage_classes") or []
                      if item.get("provisioner") in provisioners} | set(storage_classes))
    claims = {}
    for item in resources.get("claims") or []:
        if item.get("spec", {}).get("storageClassName") in classes:
            meta = item["metadata"]
            claims[_key(meta["namespace"], meta["name"])] = {
                "namespace": meta["namespace"], "name": meta["name"], "volume": item["spec"].get("volumeName"),
                "terminating": bool(meta.get("deletionTimestamp")), "finalizers": meta.get("finalizers") or []}
    pods = []
    for pod in resources.get("pods") or []:
        used = sorted(_claims_of_pod(pod) & set(claims))
        if used:
            meta = pod["metadata"]
            pods.append({"namespace": meta["namespace"], "name": meta["name"], "claims": used,
                         "node": pod.get("spec", {}).get("nodeName"),
                         "terminating": bool(meta.get("deletionTimestamp"))})
    attached = {}
    for attachment in resources.get("attachments") or []:
        volume = attachment.get("spec", {}).get("source", {}).get("persistentVolumeName")
        if volume:
            attached.setdefault(volume, []).append(attachment["spec"].get("nodeName"))
    volumes = []
    for item in resources.get("volumes") or []:
        spec = item.get("spec", {})
        reference = spec.get("claimRef") or {}
        claim = _key(reference["namespace"], reference["name"]) if reference.get("name") else None
        if spec.get("storageClassName") not in classes and claim not in claims:
            continue
        name, csi = item["metadata"]["name"], spec.get("csi") or {}
        policy = spec.get("persistentVolumeReclaimPolicy", "Delete")
        phase = item.get("status", {}).get("phase", "")
        volumes.append({"name": name, "handle": csi.get("volumeHandle"), "driver": csi.get("driver"),
                        "reclaim_policy": policy, "phase": phase, "claim": claim,
                        "attached_to": sorted(attached.get(name, [])),
                        "reason": _reason(policy, phase, claims.get(claim), pods, attached.get(name))})
    return {"classes": classes, "claims": [claims[key] for key in sorted(claims)], "pods": pods,
            "volumes": sorted(volumes, key=lambda volume: volume["name"])}


def _reason(policy, phase, claim, pods, attached_to):
    """Why a volume is still there, in the words an operator acts on."""
    if claim is not None:
        users = ["%s/%s" % (pod["namespace"], pod["name"]) for pod in pods
                 if _key(claim["namespace"], claim["name"]) in pod["claims"]]
        if not claim["terminating"]:
            return "its claim %s/%s was not deleted" % (claim["namespace"], claim["name"])
        if users:
            return "its claim %s/%s is terminating but pods still use it: %s" % (
                claim["namespace"], claim["name"], ", ".join(users))
        if claim["finalizers"]:
            return ("its claim %s/%s is terminating, held by the finalizers %s (no controller has released it: "
                    "is kube-controller-manager running?)" % (claim["namespace"], claim["name"],
                                                              ", ".join(claim["finalizers"])))
        return "its claim %s/%s is still being deleted" % (claim["namespace"], claim["name"])
    if attached_to:
        return "still attached to %s (the CSI controller has not detached it yet)" % ", ".join(attached_to)
    if policy == "Retain":
        return ("reclaim policy Retain: the disk stays on the Proxmox storage by design; free it by hand "
                "(pvesm free) if its data is not needed")
    return "reclaim policy %s, phase %s: the CSI controller has not deleted it yet" % (policy, phase or "unknown")


class FilterModule:
    def filters(self):
        return {"csi_volumes": csi_volumes}
