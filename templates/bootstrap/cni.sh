#!/bin/bash
# bake-bootstrap-cni.service: the pod network add-on (first control plane only). A control plane that
# runs pods (cluster.allowSchedulingOnControlPlanes) is never tainted: its kubeadm config says
# `nodeRegistration.taints: []`.
# shellcheck source=lib.sh
. /usr/local/lib/bake/bootstrap/lib.sh

cni_install() {
    local -a urls seeded applied=()
    split BAKE_CNI_URLS urls
    split BAKE_CNI_MANIFESTS seeded
    install -d -m 0700 "$CNI_WORK_DIR"
    local url file name
    for url in "${urls[@]}"; do
        file="$CNI_WORK_DIR/${url##*/}"
        log "downloading $url"
        fetch -o "$file.tmp" "$url"
        mv "$file.tmp" "$file"
        applied+=(-f "$file")
    done
    # cluster.airgap: the manifests came with the images seed (the runtime phase copied them here).
    for name in "${seeded[@]}"; do
        applied+=(-f "$CNI_WORK_DIR/${name##*/}")
    done
    case $BAKE_CNI in
    calico)
        kubectl_retry apply --server-side --force-conflicts "${applied[@]}"
        kubectl_retry wait --for=condition=established --timeout=300s \
            crd/installations.operator.tigera.io crd/apiservers.operator.tigera.io
        kubectl_retry apply -f "$BAKE_CNI_CONFIG"
        ;;
    flannel)
        # One apply of the manifests with the profile's network patched into flannel's ConfigMap (the
        # kustomization names them): no flannel pod starts with upstream's default network. Server-side
        # and without kubectl's own validation, which first fetches and parses the API's OpenAPI documents:
        # half the apply's time on an emulated first boot (the manifests are upstream's, the patch ours).
        install -m 0600 "$BAKE_CNI_CONFIG" "$CNI_WORK_DIR/kustomization.yaml"
        kubectl_retry apply --server-side --force-conflicts --validate=false -k "$CNI_WORK_DIR"
        ;;
    cilium)
        if ((${#seeded[@]} > 0)); then
            # air gap: a manifest rendered beforehand (helm template / cilium install --dry-run)
            kubectl_admin apply --server-side --force-conflicts "${applied[@]}"
            return 0
        fi
        (cd "$CNI_WORK_DIR" && sha256sum --check "$(basename "${urls[1]}")")
        tar -xzf "$CNI_WORK_DIR/$(basename "${urls[0]}")" -C /usr/local/bin cilium
        if kubectl_admin -n kube-system get daemonset cilium >/dev/null 2>&1; then
            KUBECONFIG=$ADMIN_CONF cilium upgrade --version "$BAKE_CILIUM_VERSION" --values "$BAKE_CNI_CONFIG"
        else
            KUBECONFIG=$ADMIN_CONF cilium install --version "$BAKE_CILIUM_VERSION" --values "$BAKE_CNI_CONFIG"
        fi
        ;;
    none) log "cluster.cni is none: no pod network installed" ;;
    *) die "unknown CNI $BAKE_CNI" ;;
    esac
}

# The line `kubeadm init` prints as it uploads its configuration (phases/uploadconfig): its first use of
# admin.conf, which it has bound to kubeadm:cluster-admins by then (initData.Client, in v1.37.2).
readonly KUBEADM_CLIENT_CUE='[upload-config] Storing the configuration'

# beside_kubeadm OUTPUT: run by the kubeadm phase beside `kubeadm init` (first control plane), whose output
# it watches: the pod network is applied once admin.conf works, while kubeadm still creates its tokens,
# RBAC and add-ons (ten seconds and more on an emulated first boot), instead of after them. The kubeadm
# phase waits for an apply under way, and stops this while it still waits for the cue (kubeadm failed, or
# another version words the line otherwise); the cni phase applies whatever was not applied here.
beside_kubeadm() {
    local out=$1
    until [[ -s $out && $(<"$out") == *"$KUBEADM_CLIENT_CUE"* ]]; do sleep 1; done
    : >"$CNI_BESIDE_STARTED"
    log "kubeadm init has its admin.conf client: applying the pod network beside it"
    step cni cni_install
}

case ${1:-} in
beside-kubeadm)
    bake_env bake-bootstrap-cni
    beside_kubeadm "$2"
    ;;
"")
    bake_start bake-bootstrap-cni
    if [[ $BAKE_ROLE == init ]]; then
        step cni cni_install
    fi
    ;;
*)
    echo "usage: $0 [beside-kubeadm KUBEADM_OUTPUT]" >&2
    exit 2
    ;;
esac
